"""Shared pytest fixtures. Each block below is self-contained; add new ones as their own block."""

from __future__ import annotations

import pytest

import voiceos  # noqa: F401  first, as every entry point does: it sets OpenMP's wait policy before torch loads


# ---------------------------------------------------------------------------------------------------------------
# pulse_server: a private PulseAudio server with virtual speaker/mic devices (tests/audio_server.py)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory: pytest.TempPathFactory):
    """Start the server, point this process's PortAudio at it (vspk, spkmon, vmic), and stop it at the end.

    Fails (does not skip) when the PulseAudio binaries are missing: `make` installs them.
    """
    from voiceos.audio.virtual import PulseServer, PulseUnavailable

    server = PulseServer(tmp_path_factory.mktemp("pulse"))
    problem = None
    try:
        server.start()
    except PulseUnavailable as err:
        problem = str(err)
    if problem:
        pytest.fail(problem, pytrace=False)
    server.activate()
    try:
        yield server
    finally:
        server.deactivate()
        server.stop()


@pytest.fixture
def short_tmp_dir():
    """A short directory under /tmp, for unix sockets (AF_UNIX paths are limited to 107 bytes)."""
    import shutil
    import tempfile
    from pathlib import Path

    directory = Path(tempfile.mkdtemp(prefix="vo-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# no_sound_env: the environment of a `voiceos` subprocess on a machine without audio
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def no_sound_env(tmp_path, xdg_cache_home) -> dict[str, str]:
    """An environment with no sound server, so PortAudio finds no device; the LM cache is the test session's."""
    import os

    env = dict(os.environ)
    env.update(
        PULSE_SERVER=f"unix:{tmp_path}/no-such-socket",
        XDG_RUNTIME_DIR=str(tmp_path),
        XDG_CACHE_HOME=str(xdg_cache_home),
    )
    env.pop("ALSA_CONFIG_PATH", None)
    env.pop("VOICEOS_CONFIG", None)
    return env


# ---------------------------------------------------------------------------------------------------------------
# The real embedded models, each loaded once per test session and shared by every test module.
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def xdg_cache_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A cache home kept in .pytest_cache, so the dequantized LM (40 s to build) is built once per checkout.

    Subprocess tests point XDG_CACHE_HOME here too, so the CLI under test finds the same cache.
    """
    pytest_cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    return pytest_cache.mkdir("voiceos-xdg-cache") if pytest_cache else tmp_path_factory.mktemp("voiceos-xdg-cache")


@pytest.fixture(scope="session")
def test_config(xdg_cache_home):
    """The shipped defaults, with the LM cache in the test cache home."""
    import dataclasses

    from voiceos.config import Config

    config = Config()
    return dataclasses.replace(
        config, dialogue=dataclasses.replace(config.dialogue, cache_dir=str(xdg_cache_home / "voiceos"))
    )


@pytest.fixture(scope="session")
def device_plan(test_config):
    from voiceos.models import plan_for

    return plan_for(test_config)


def _load_asr(test_config, device_plan, engine: str):
    import dataclasses

    from voiceos.asr import load_transcriber

    model = load_transcriber(dataclasses.replace(test_config.asr, engine=engine, fallback_below=None), device_plan)
    model.warm()
    return model


@pytest.fixture(scope="session")
def whisper_transcriber(test_config, device_plan):
    return _load_asr(test_config, device_plan, "whisper")


@pytest.fixture(scope="session")
def moonshine_transcriber(test_config, device_plan):
    return _load_asr(test_config, device_plan, "moonshine")


@pytest.fixture(scope="session")
def transcriber(test_config, request):
    """The configured engine (asr.engine's default), from the same loaded models as the fixtures above: Moonshine
    with Whisper's second opinion where it is unsure (asr.fallback_below)."""
    from voiceos.asr.fallback import FallbackTranscriber

    first = request.getfixturevalue(f"{test_config.asr.engine}_transcriber")
    if test_config.asr.engine != "moonshine" or test_config.asr.fallback_below is None:
        return first
    return FallbackTranscriber(first, request.getfixturevalue("whisper_transcriber"), test_config.asr.fallback_below)


@pytest.fixture(scope="session")
def lm(test_config, device_plan):
    """The dialogue LM with the shipped emotion head attached, as Pipeline.load leaves it."""
    from voiceos.dialogue.lm import DialogueLM
    from voiceos.emotion.classifier import load_head

    model = DialogueLM.load(test_config.dialogue, device_plan)
    model.attach_emotion_head(*load_head(test_config.emotion.checkpoint))
    return model


@pytest.fixture(scope="session")
def llama_lm(test_config, lm):
    """The default decoder: llama.cpp on the embedded GGUF with the shipped adapter, beside the ``lm`` fixture's torch
    model (its tokenizer, prompt and emotion head)."""
    from voiceos.dialogue.llama_cpp_lm import LlamaCppLM

    return LlamaCppLM.beside(lm, test_config.dialogue)


@pytest.fixture(scope="session")
def tts_engine(test_config, device_plan):
    from voiceos.tts import load_engine
    from voiceos.tts.voices import load_voice

    engine = load_engine(load_voice(test_config.tts.voice, test_config.tts.voices_dir), device_plan)
    engine.warm()
    return engine


@pytest.fixture(scope="session")
def seeded_tts(test_config, device_plan):
    """``seeded_tts(seed)``: a fresh Piper engine whose noise starts from ``seed``, for tests that judge the audio.

    Piper samples noise inside the model (onnxruntime's RandomNormalLike), and onnxruntime seeds those ops once, when
    the session is created: ``onnxruntime.set_seed`` on the shared engine changes nothing, and what the shared engine
    says depends on every synthesis the session ran before. A new session after the seed says the same audio for the
    same calls, whatever ran before (checked: byte for byte). It costs a load of the voice, ~0.3 s.
    """
    import onnxruntime

    from voiceos.tts import load_engine
    from voiceos.tts.voices import load_voice

    def make(seed: int):
        onnxruntime.set_seed(seed)
        return load_engine(load_voice(test_config.tts.voice, test_config.tts.voices_dir), device_plan)

    return make


@pytest.fixture
def pipeline(test_config, device_plan, transcriber, llama_lm, tts_engine):
    """A pipeline over the shared models (the default decoder, llama.cpp) with a fresh (empty) conversation history."""
    from voiceos.pipeline import Pipeline

    lm = llama_lm.with_options()  # its own options: a test may change them
    return Pipeline(test_config, device_plan, transcriber=transcriber, lm=lm, tts=tts_engine, voice=tts_engine.profile)


# ---------------------------------------------------------------------------------------------------------------
# systemd_user_manager: a real `systemd --user` in its own mount/cgroup namespaces (tests/systemd_manager.py)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def systemd_user_manager():
    """Start one user manager for the session and stop it at the end.

    Fails (does not skip) when systemd, unshare or root is missing: `make` installs systemd.
    """
    from systemd_manager import UserManager, UserManagerUnavailable

    manager = UserManager()
    problem = None
    try:
        manager.start()
    except UserManagerUnavailable as err:
        problem = str(err)
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture
def daemon_manager(systemd_user_manager):
    """The session's user manager; the voiceos unit is stopped and its failure state reset after each test."""
    from voiceos.daemon.service import UNIT_NAME

    yield systemd_user_manager
    systemd_user_manager.systemctl("stop", UNIT_NAME, check=False, timeout=60)
    systemd_user_manager.systemctl("reset-failed", UNIT_NAME, check=False)
