"""store_photo: photos are decoded within a pixel limit, refused when they do not decode,
and stored re-encoded (no metadata), on real files made here."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from audio.store import AssetStore, make_store
from haidang.media import (
    MAX_PHOTO_PIXELS,
    MediaError,
    PhotoDimensionsError,
    store_photo,
)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(width: int, height: int) -> bytes:
    """A complete, valid 1-bit greyscale PNG of width x height, all black.

    Rows of zeros compress about 1000:1, so 20000x20000 (400 megapixels, 50 MB of raw
    rows) is a file of some 50 KB: built row by row, never held whole in memory.
    """
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then 8 pixels a byte
    packer = zlib.compressobj(9)
    parts = [packer.compress(row) for _ in range(height)]
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def _jpeg(size: tuple[int, int] = (64, 48), **options: object) -> bytes:
    image = Image.new("RGB", size, (11, 93, 148))
    image.paste((240, 200, 20), (0, 0, size[0] // 2, size[1] // 4))  # top-left marker
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, **options)
    return out.getvalue()


def _stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def store(tmp_path: Path) -> AssetStore:
    return make_store("local", root=tmp_path / "store")


@pytest.mark.parametrize(
    "size",
    [
        (20_000, 20_000),  # past Pillow's own guard too
        (9_000, 9_000),  # 81 MP: under Pillow's warning, over our 52 MP
    ],
)
def test_photo_png_bomb_is_refused_before_decoding(
    store: AssetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(*size))
    assert bomb.stat().st_size < 100_000
    # Without Pillow's global guard, our limit alone must stop it before load().
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(bomb) as opened:  # a real PNG: its header reads
        assert opened.size == size
    started = time.perf_counter()
    with pytest.raises(PhotoDimensionsError, match="megapixels"):
        store_photo(store, bomb)
    assert time.perf_counter() - started < 2  # 400 MB of pixels were never decoded
    assert size[0] * size[1] > MAX_PHOTO_PIXELS
    assert _stored_files(tmp_path / "store") == []


def test_photo_png_bomb_refused_with_pillows_guard_on(store: AssetStore, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(20_000, 20_000))
    with pytest.raises(PhotoDimensionsError):
        store_photo(store, bomb)


def test_photo_jpeg_magic_with_script_is_refused(store: AssetStore, tmp_path: Path) -> None:
    fake = tmp_path / "x.jpg"
    fake.write_bytes(b"\xff\xd8\xff\xe0<script>alert(1)</script>")
    with pytest.raises(MediaError, match="does not decode as a JPEG"):
        store_photo(store, fake)
    assert _stored_files(tmp_path / "store") == []


def test_photo_truncated_jpeg_is_refused(store: AssetStore, tmp_path: Path) -> None:
    whole = _jpeg((640, 480))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    with Image.open(cut) as opened:  # the header is intact: only decoding finds it out
        assert opened.size == (640, 480)
    with pytest.raises(MediaError, match="does not decode"):
        store_photo(store, cut)
    assert _stored_files(tmp_path / "store") == []


def test_photo_jpeg_is_stored_reencoded_without_exif_and_upright(
    store: AssetStore, tmp_path: Path
) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Orientation] = 6  # the camera was turned: rotate 90° clockwise
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (15.0, 7.0, 12.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (108.0, 48.0, 0.0),
    }
    original = _jpeg((64, 48), exif=exif, comment=b"<script>alert(1)</script>")
    with Image.open(io.BytesIO(original)) as check:  # the input really carries the GPS
        assert check.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    source = tmp_path / "boat.jpg"
    source.write_bytes(original + b"<script>alert(2)</script>")  # trailing junk too

    key = store_photo(store, source)

    assert key.endswith(".jpg")
    with store.open(key) as stored_file:
        stored = stored_file.read()
    assert stored != original
    digest = hashlib.sha256(stored).hexdigest()
    assert key == f"photos/{digest[:2]}/{digest}.jpg"  # addressed by what is stored
    assert b"Exif" not in stored and b"PhoneMaker" not in stored and b"script" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        image.load()
        assert image.format == "JPEG"
        assert not image.getexif()
        assert "exif" not in image.info and "comment" not in image.info
        assert image.size == (48, 64)  # orientation applied before it was dropped
        # The marker, top-left before the turn, is top-right after it.
        assert image.getpixel((44, 2))[0] > 200  # type: ignore[index]
        assert image.getpixel((2, 2))[0] < 60  # type: ignore[index]
    assert store_photo(store, source) == key  # the same photo, the same key


def test_photo_png_is_kept_as_png(store: AssetStore, tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    image = Image.new("RGBA", (40, 30), (200, 30, 30, 128))
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "<script>alert(1)</script>")
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=text, compress_level=1)
    source = tmp_path / "flag.png"
    source.write_bytes(out.getvalue())

    key = store_photo(store, source)

    assert key.endswith(".png")
    with store.open(key) as stored_file:
        stored = stored_file.read()
    assert stored != out.getvalue()
    digest = hashlib.sha256(stored).hexdigest()
    assert key == f"photos/{digest[:2]}/{digest}.png"
    assert b"script" not in stored
    with Image.open(io.BytesIO(stored)) as kept:
        assert kept.format == "PNG"
        assert kept.mode == "RGBA" and kept.size == (40, 30)
        assert kept.getpixel((5, 5)) == (200, 30, 30, 128)
        assert "Comment" not in kept.info


def test_photo_larger_than_telegram_takes_is_scaled_down(store: AssetStore, tmp_path: Path) -> None:
    source = tmp_path / "wide.jpg"
    source.write_bytes(_jpeg((7_000, 3_500)))  # 24.5 MP: accepted, but 10500 > 10000

    key = store_photo(store, source)

    with store.open(key) as stored_file, Image.open(stored_file) as image:
        width, height = image.size
    assert width + height <= 10_000
    assert abs(width / height - 2) < 0.01


def test_photo_of_a_50_mp_phone_is_accepted(store: AssetStore, tmp_path: Path) -> None:
    source = tmp_path / "phone.png"
    source.write_bytes(png_bomb(8_160, 6_144))  # a "50 MP" sensor: 50.1 MP
    key = store_photo(store, source)
    with store.open(key) as stored_file, Image.open(stored_file) as image:
        assert sum(image.size) <= 10_000  # scaled down for Telegram


def test_photo_too_long_for_telegram_is_refused(store: AssetStore, tmp_path: Path) -> None:
    source = tmp_path / "strip.png"
    out = io.BytesIO()
    Image.new("RGB", (2_100, 100), (0, 0, 0)).save(out, format="PNG")
    source.write_bytes(out.getvalue())
    with pytest.raises(PhotoDimensionsError, match="20 times"):
        store_photo(store, source)
