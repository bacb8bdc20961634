"""The DIMSE interface (PS3.7, PS3.8) on pynetdicom: SCP handlers and SCU helpers."""
