"""WADO-RS: instances, metadata, bulk data, frames, rendered images (PS3.18 10.4, 8.7).

Instances are sent in their stored transfer syntax when the Accept header allows it
(``transfer-syntax=*``), otherwise in the one asked for (Explicit VR Little Endian by
default, PS3.18 8.7.3.5.2), transcoded on the fly. Metadata comes from the index only.
Frames of compressed instances pass through untouched when the client accepts their
encoding.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator

from pydicom import dcmread
from pydicom.encaps import generate_frames
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from vesalius.archive import Archive
from vesalius.archive.retrieve import InstanceRef
from vesalius.dicom.render import parse_params
from vesalius.dicom.transcode import choose, transcode
from vesalius.dicom.uids import EXPLICIT_VR_LE, UNCOMPRESSED
from vesalius.dicom.video import is_video
from vesalius.errors import NotFound
from vesalius.security.policy import Action
from vesalius.web.dicomweb.access import require_study
from vesalius.web.dicomweb.common import (
    DICOM_JSON,
    HTTPError,
    base_url,
    instance_url,
    log,
    uids,
)
from vesalius.web.dicomweb.multipart import MediaRange, MultipartWriter, parse_accept

ANY = "*"

#: Media type of a frame or bulk data value in each transfer syntax (PS3.18 Table 8.7.3-5).
_TS_MEDIA: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg2", "1.2.840.10008.1.2.4.100.1": "video/mpeg2",
    "1.2.840.10008.1.2.4.101": "video/mpeg2", "1.2.840.10008.1.2.4.101.1": "video/mpeg2",
    "1.2.840.10008.1.2.4.107": "video/H265", "1.2.840.10008.1.2.4.108": "video/H265",
}
for _v in ("102", "103", "104", "105", "106"):
    _TS_MEDIA[f"1.2.840.10008.1.2.4.{_v}"] = _TS_MEDIA[f"1.2.840.10008.1.2.4.{_v}.1"] = "video/mp4"
_ALIASES = {"image/x-jls": "image/jls", "image/x-dicom-rle": "image/dicom-rle"}


def media_of(ts: str) -> str:
    return _TS_MEDIA.get(ts, "application/octet-stream")


# --------------------------------------------------------------------------- instances


def _dicom_choice(ranges: list[MediaRange]) -> tuple[bool, set[str]]:
    """(multipart, acceptable transfer syntaxes or {'*'}) for application/dicom."""
    multipart = True
    syntaxes: set[str] = set()
    usable = False
    for r in ranges:
        if r.type == "multipart/related" and r.subtype in ("", "application/dicom"):
            pass
        elif r.type == "application/dicom":
            multipart = False
        elif r.type in ("*/*", "multipart/*", "application/*"):
            syntaxes.add(ANY)
            usable = True
            continue
        else:
            continue
        usable = True
        syntaxes.add(r.transfer_syntax or EXPLICIT_VR_LE)
    if not usable:
        raise HTTPError(406, 'instances are sent as multipart/related; type="application/dicom" '
                             "(optionally with transfer-syntax=UID or *)")
    return multipart, syntaxes


def _target(ref: InstanceRef, syntaxes: set[str]) -> str | None:
    if ANY in syntaxes or ref.transfer_syntax in syntaxes:
        return ref.transfer_syntax
    return choose(ref.transfer_syntax, frozenset(syntaxes))


def _encode(archive: Archive, ref: InstanceRef, target: str) -> bytes:
    data = archive.read(ref)
    if target == ref.transfer_syntax:
        return data
    ds = transcode(data, target)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


async def retrieve(request: Request, archive: Archive) -> Response:
    """Study, series or instance retrieve (PS3.18 10.4.1)."""
    study, series, sop = uids(request)
    await require_study(request, archive, Action.RETRIEVE, study)
    multipart, syntaxes = _dicom_choice(parse_accept(request.headers.get("accept")))
    refs = await run_in_threadpool(archive.instances_of, study, series, sop)
    plan = [(ref, _target(ref, syntaxes)) for ref in refs]
    sendable = [(ref, ts) for ref, ts in plan if ts is not None]
    if not sendable:
        raise HTTPError(406, "no requested transfer syntax can be produced for these instances "
                             "(a lossy syntax is never made from a lossless original)")
    status = 200 if len(sendable) == len(plan) else 206
    if not multipart:
        if len(sendable) != 1:
            raise HTTPError(406, "a single-part application/dicom answer needs exactly one instance")
        ref, ts = sendable[0]
        body = await run_in_threadpool(_encode, archive, ref, ts)
        return Response(body, media_type=f"application/dicom; transfer-syntax={ts}")
    writer = MultipartWriter("application/dicom")
    if all(ts == ref.transfer_syntax for ref, ts in sendable):
        return _as_stored(archive, writer, sendable, status)

    async def stream() -> AsyncIterator[bytes]:
        for ref, ts in sendable:
            try:
                body = await run_in_threadpool(_encode, archive, ref, ts)
            except Exception as exc:
                # The status is already sent: leave the part out and say so in the log.
                log.warning("WADO-RS: an instance could not be converted to %s (%s)", ts, type(exc).__name__)
                continue
            yield writer.part(f"application/dicom; transfer-syntax={ts}", body)
        yield writer.close()

    return StreamingResponse(stream(), status_code=status, media_type=writer.content_type)


_BATCH_BYTES = 8 << 20  # read about this much per worker-thread hop


def _read_batch(archive: Archive, refs: list[InstanceRef]) -> list[bytes]:
    return [archive.read(ref) for ref in refs]


def _as_stored(archive: Archive, writer: MultipartWriter, sendable: list[tuple[InstanceRef, str]],
               status: int) -> Response:
    """Instances sent byte for byte as stored. Their sizes are in the index, so the answer
    has a Content-Length (no chunked framing) and each object is written without a copy."""
    heads = [writer.head(f"application/dicom; transfer-syntax={ts}") for _, ts in sendable]
    length = sum(len(h) + ref.size + 2 for h, (ref, _) in zip(heads, sendable, strict=True))
    length += len(writer.close())
    batches: list[list[InstanceRef]] = [[]]
    size = 0
    for ref, _ in sendable:
        if batches[-1] and size + ref.size > _BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(ref)
        size += ref.size

    async def stream() -> AsyncIterator[bytes]:
        i = 0
        for batch in batches:
            bodies = await run_in_threadpool(_read_batch, archive, batch)
            for body in bodies:
                yield (b"\r\n" if i else b"") + heads[i]
                yield body
                i += 1
        yield b"\r\n" + writer.close()

    return StreamingResponse(stream(), status_code=status, media_type=writer.content_type,
                             headers={"Content-Length": str(length)})


# --------------------------------------------------------------------------- metadata


async def metadata(request: Request, archive: Archive) -> Response:
    """Study, series or instance metadata as DICOM JSON, from the index (PS3.18 10.4.1.1.2)."""
    study, series, sop = uids(request)
    await require_study(request, archive, Action.RETRIEVE, study)
    ranges = parse_accept(request.headers.get("accept"))
    if not any(r.type in ("application/dicom+json", "application/json", "*/*", "application/*")
               for r in ranges):
        raise HTTPError(406, "metadata is answered in application/dicom+json")
    base = base_url(request)

    def build() -> bytes:
        found = archive.metadata(study, series, sop)
        parts = []
        for ref, text in found:
            url = instance_url(base, ref.study_uid, ref.series_uid, ref.sop_uid) + "/bulk/"
            text = text.replace('"BulkDataURI":"bulk:', '"BulkDataURI":"' + url)
            head = '{"00083002":{"vr":"UI","Value":["' + ref.transfer_syntax + '"]}'
            parts.append(head + ("," + text[1:] if len(text) > 2 else "}"))
        return ("[" + ",".join(parts) + "]").encode()

    body = await run_in_threadpool(build)
    return Response(body, media_type=DICOM_JSON)


# --------------------------------------------------------------------------- bulk data


def _bulk_value(archive: Archive, ref: InstanceRef, tag: int) -> tuple[list[bytes], str]:
    with io.BytesIO(archive.read(ref)) as f:
        ds = dcmread(f, force=True)
    elem = ds.get(tag)
    if elem is None:
        for e in ds.iterall():
            if int(e.tag) == tag:
                elem = e
                break
    if elem is None or elem.value is None:
        raise NotFound(f"the instance has no bulk data value for tag {tag:08X}")
    ts = str(ds.file_meta.TransferSyntaxUID)
    if tag == 0x7FE00010 and ts not in UNCOMPRESSED:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        # generate_frames skips the Basic Offset Table item and joins each frame's fragments
        return list(generate_frames(elem.value, number_of_frames=frames)), media_of(ts)
    return [bytes(elem.value)], "application/octet-stream"


async def bulkdata(request: Request, archive: Archive) -> Response:
    """A bulk data value named by a BulkDataURI of the metadata (PS3.18 10.4.1.1.3)."""
    study, series, sop = uids(request)
    await require_study(request, archive, Action.RETRIEVE, study)
    raw = str(request.path_params["tag"])
    try:
        tag = int(raw, 16)
        if len(raw) != 8:
            raise ValueError
    except ValueError:
        raise HTTPError(400, "the bulk data tag must be 8 hexadecimal digits") from None
    refs = await run_in_threadpool(archive.instances_of, study, series, sop)
    ranges = parse_accept(request.query_params.get("accept") or request.headers.get("accept"))
    if tag == 0x7FE00010 and is_video(refs[0].transfer_syntax):
        # OHIF plays video from the PixelData BulkDataURI (singlepart "video")
        body, vmedia = await run_in_threadpool(archive.frames.video, refs[0])
        return ranged_response(request, body, vmedia)
    values, media = await run_in_threadpool(_bulk_value, archive, refs[0], tag)
    single = next((r for r in ranges if r.type in (media, "*/*", "application/octet-stream")
                   and r.type != "multipart/related"), None)
    if single is not None and len(values) == 1 and not any(r.type == "multipart/related" for r in ranges[:1]):
        return Response(values[0], media_type=media if single.type == "*/*" else single.type)
    writer = MultipartWriter(media)
    body = b"".join(writer.part(media, v) for v in values) + writer.close()
    return Response(body, media_type=writer.content_type)


# --------------------------------------------------------------------------- frames


def _frame_numbers(raw: str) -> list[int]:
    out = []
    for item in raw.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise HTTPError(400, f"frame numbers are positive integers separated by commas, not {raw[:40]!r}")
        out.append(int(item))
    if len(out) > 10000:
        raise HTTPError(400, "too many frames in one request")
    return out


def _frame_choice(ranges: list[MediaRange], stored_ts: str) -> tuple[bool, bool]:
    """(multipart, native) for a frames request; raises 406 when nothing fits."""
    stored_media = media_of(stored_ts)
    compressed = stored_ts not in UNCOMPRESSED
    for r in ranges:
        multipart = r.type == "multipart/related"
        mtype = _ALIASES.get(r.subtype if multipart else r.type, r.subtype if multipart else r.type)
        if multipart and not mtype:
            mtype = "application/octet-stream"
        ts = r.transfer_syntax
        if mtype in ("*/*", "*", "multipart/*"):
            return True, False  # the default answer is multipart (PS3.18 8.7.3.5.2)
        if ts == ANY and mtype in (stored_media, "application/octet-stream"):
            return multipart, False
        if mtype == stored_media and (ts is None or ts == stored_ts):
            return multipart, False
        if mtype == "application/octet-stream" and (ts is None or ts == EXPLICIT_VR_LE):
            return multipart, compressed
    raise HTTPError(406, f"the frames are available as {stored_media} (transfer-syntax={stored_ts}) or "
                         "uncompressed application/octet-stream")


async def frames(request: Request, archive: Archive) -> Response:
    """Frames of an instance (PS3.18 10.4.1.1.4)."""
    study, series, sop = uids(request)
    await require_study(request, archive, Action.RETRIEVE, study)
    numbers = _frame_numbers(str(request.path_params["frames"]))
    refs = await run_in_threadpool(archive.instances_of, study, series, sop)
    ref = refs[0]
    multipart, native = _frame_choice(parse_accept(request.headers.get("accept")), ref.transfer_syntax)
    data, ts = await run_in_threadpool(archive.frames.frames, ref, numbers, native=native)
    media = media_of(ts)
    if not multipart:
        if len(data) != 1:
            raise HTTPError(406, "a single-part answer can hold one frame only; accept multipart/related")
        return Response(data[0], media_type=f"{media}; transfer-syntax={ts}")
    writer = MultipartWriter(media)
    location = instance_url(base_url(request), study, ref.series_uid, ref.sop_uid) + "/frames/"
    body = b"".join(writer.part(f"{media}; transfer-syntax={ts}", d, location + str(n))
                    for d, n in zip(data, numbers, strict=True)) + writer.close()
    return Response(body, media_type=writer.content_type)


# --------------------------------------------------------------------------- rendered


def ranged_response(request: Request, body: bytes, media: str) -> Response:
    """``body`` whole, or the byte range the request names (RFC 9110 14), as browsers'
    video elements ask for."""
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    spec = request.headers.get("range", "")
    if not spec.startswith("bytes="):
        return Response(body, media_type=media, headers=headers)
    first = spec[6:].split(",")[0].strip()
    lo, _, hi = first.partition("-")
    size = len(body)
    try:
        if lo == "":
            start, end = max(size - int(hi), 0), size - 1
        else:
            start, end = int(lo), (int(hi) if hi else size - 1)
    except ValueError:
        start, end = size, size
    if start >= size or start > end or start < 0:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    end = min(end, size - 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(body[start:end + 1], status_code=206, media_type=media, headers=headers)



_RENDERED = {"image/jpeg": "image/jpeg", "image/png": "image/png", "image/*": "image/jpeg",
             "*/*": "image/jpeg"}


def _render_media(request: Request) -> str:
    accept = request.query_params.get("accept") or request.headers.get("accept")
    for r in parse_accept(accept):
        if r.type in _RENDERED:
            return _RENDERED[r.type]
        if r.type.startswith("video/"):
            return r.type
    raise HTTPError(406, "rendered images are available as image/jpeg or image/png")


def _representative(refs: list[InstanceRef]) -> InstanceRef:
    first_series = [r for r in refs if r.series_uid == refs[0].series_uid]
    return first_series[len(first_series) // 2]


async def rendered(request: Request, archive: Archive, *, thumbnail: bool = False) -> Response:
    """Rendered image or thumbnail of a study, series, instance or frame (PS3.18 10.4.1.1.5, 9.5)."""
    study, series, sop = uids(request)
    await require_study(request, archive, Action.RETRIEVE, study)
    media = _render_media(request)
    refs = await run_in_threadpool(archive.instances_of, study, series, sop)
    ref = refs[0] if sop else _representative(refs)
    if media.startswith("video/") or (sop and is_video(ref.transfer_syntax) and "frames" not in request.path_params):
        if not is_video(ref.transfer_syntax):
            raise HTTPError(406, "the instance is not a video; accept image/jpeg or image/png")
        body, vmedia = await run_in_threadpool(archive.frames.video, ref)
        return ranged_response(request, body, vmedia)
    params = parse_params(dict(request.query_params), thumbnail=thumbnail)
    params = dataclasses.replace(params, media_type=media)
    frame = 1
    if "frames" in request.path_params:
        numbers = _frame_numbers(str(request.path_params["frames"]))
        if len(numbers) != 1:
            raise HTTPError(400, "render one frame at a time")
        frame = numbers[0]
    elif not sop or thumbnail:
        n = await run_in_threadpool(archive.frames.number_of_frames, ref)
        frame = (n + 1) // 2 if thumbnail and n > 1 else 1
    body = await run_in_threadpool(archive.frames.render, ref, frame, params)
    return Response(body, media_type=media, headers={"Cache-Control": "private, max-age=3600"})
