"""Audio: speech normalisation, TTS engines, mastering, programmes and feeds."""
