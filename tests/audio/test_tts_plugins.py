"""A commercial TTS by configuration: an installed plugin engine chosen, and given options."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from audio import tts
from audio.tts import base as tts_base
from haidang.media import engine_name
from haidang.runtime import Service, StartupError
from haidang.settings import Settings, SettingsError, load_settings

# A distribution as pip would install it: its module, and its metadata declaring the
# entry point. The engine stands in for a vendor's voice: it speaks with espeak-ng in
# another voice when the API key is right, and fails as a service does otherwise.
PLUGIN = """
from audio.tts import EngineError, EspeakEngine

calls = []


class VendorEngine:
    name = "vendor"
    max_chars = 250

    def __init__(self, *, api_key: str, voice: str = "vi") -> None:
        self.api_key = api_key
        self.inner = EspeakEngine(voice=voice, pitch=30)

    async def synthesize(self, text, *, language="vi"):
        calls.append(text)
        if self.api_key != "good-key":
            raise EngineError("vendor: 401 unauthorised")
        return await self.inner.synthesize(text, language=language)
"""


@pytest.fixture
def vendor_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site-packages"
    (site / "vendor_tts-1.0.dist-info").mkdir(parents=True)
    (site / "vendor_tts.py").write_text(PLUGIN, encoding="utf-8")
    (site / "vendor_tts-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vendor-tts\nVersion: 1.0\n", encoding="utf-8"
    )
    (site / "vendor_tts-1.0.dist-info" / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""
            [{tts.PLUGIN_GROUP}]
            vendor = vendor_tts:VendorEngine
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(site))
    # Registrations made by this test do not outlive it.
    monkeypatch.setattr(tts_base, "_registry", dict(tts_base._registry))
    return site


def settings(**values: object) -> Settings:
    return load_settings(_env_file=None, **values)


async def test_auto_speaks_with_the_configured_plugin_and_its_options(
    vendor_plugin: Path,
) -> None:
    import vendor_tts  # type: ignore[import-not-found]

    name = engine_name(
        settings(tts_online_engine="vendor", tts_engine_options='{"api_key": "good-key"}')
    )
    assert name == "auto:vendor" and "vendor" in tts.available()
    speech = await tts.create(name).synthesize("Bão số ba. Tàu thuyền vào bờ.")
    assert (speech.engine, speech.fallback_reason) == ("vendor", None)
    assert speech.duration_seconds > 1.0
    assert vendor_tts.calls == ["Bão số ba. Tàu thuyền vào bờ."]  # one chunk of <= 250

    # A wrong key: the vendor fails and the offline voice speaks instead.
    name = engine_name(
        settings(tts_online_engine="vendor", tts_engine_options='{"api_key": "bad"}')
    )
    speech = await tts.create(name).synthesize("Sóng cao ba mét.")
    assert speech.engine == "espeak"
    assert speech.fallback_reason == "vendor: vendor: 401 unauthorised"


def test_configuration_errors_are_named(vendor_plugin: Path) -> None:
    # Defaults: plain "auto" (gTTS first), so earlier renders stay cache hits.
    assert engine_name(settings()) == "auto"
    assert engine_name(settings(tts_engine="espeak", tts_online_engine="vendor")) == "espeak"
    with pytest.raises(LookupError, match="unknown TTS engine 'nobody'"):
        engine_name(settings(tts_online_engine="nobody"))
    with pytest.raises(TypeError, match="api_key"):
        engine_name(settings(tts_online_engine="vendor"))  # its required option is missing
    for bad in ("[1, 2]", "{not json"):
        with pytest.raises(SettingsError, match="TTS_ENGINE_OPTIONS: must be a JSON object"):
            settings(tts_engine_options=bad)
    secret = settings(tts_engine_options='{"api_key": "k-123"}')
    assert "k-123" not in repr(secret) and secret.tts_options == {"api_key": "k-123"}


def test_the_service_reads_with_the_configured_voice_or_refuses_to_start(
    vendor_plugin: Path, tmp_path: Path
) -> None:
    common = {"data_dir": tmp_path / "var", "tts_engine_options": '{"api_key": "good-key"}'}
    service = Service(settings(tts_online_engine="vendor", **common))
    assert service.tts_engine == "auto:vendor"
    assert "TTS_ENGINE=auto:vendor" in service.statuses()["audio"].detail
    with pytest.raises(StartupError, match="TTS_ONLINE_ENGINE / TTS_ENGINE_OPTIONS: unknown"):
        Service(settings(tts_online_engine="nobody", **common))
