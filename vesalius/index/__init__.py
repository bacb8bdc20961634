"""The index: SQLAlchemy models and queries over patients, studies, series and instances."""
