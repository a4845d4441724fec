"""espeak-ng in-process: speech samples together with the phonemes it spoke and when.

The espeak-ng command line writes audio but no timings (`--pho` needs an mbrola voice). Its library
reports a phoneme event, with the sample it starts at, for every phoneme it synthesizes, so one
call gives the waveform and an exact phoneme track. We call `libespeak-ng.so.1` through ctypes
(the library the Debian package `espeak-ng` installs, the same engine as the command).
"""

import ctypes
import ctypes.util
import functools
import os
import pickle
from dataclasses import dataclass

import numpy as np

from ...errors import InputError

# espeak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_DONT_EXIT = 0x8000
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_PHONEME = 0, 1, 7
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAMETER = {"rate": 1, "volume": 2, "pitch": 3}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Phoneme:
    name: str     # espeak-ng's phoneme mnemonic: "p", "aI", "@", "m", ...
    start: float  # seconds from the start of the utterance


@functools.lru_cache(maxsize=1)
def _library() -> tuple[ctypes.CDLL, int]:
    """The loaded library and its output sample rate (initialized once per process)."""
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        message = "libespeak-ng is not installed; the built-in corpus needs it (apt-get install espeak-ng)"
        raise InputError(message) from None
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise InputError("libespeak-ng failed to initialize (is espeak-ng-data installed?)")
    return lib, rate


def speak(text: str, voice: str, rate: int, pitch: int, amplitude: int) -> tuple[np.ndarray, int, list[Phoneme]]:
    """One utterance -> (int16 samples, sample rate, phonemes with start times); voice like "en-us+f3".

    The library carries state from one utterance to the next (the same text comes out a few ms
    longer or shorter depending on what was said before), so each utterance is spoken in a forked
    child of a process that initialized the library but never spoke: the same call always gives
    the same samples, as the command line does.
    """
    _library()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: speak, send the result (or the error) back, leave without cleanup
        os.close(read_end)
        try:
            payload = pickle.dumps(_speak_here(text, voice, rate, pitch, amplitude))
        except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
            payload = pickle.dumps(error)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    result = pickle.loads(payload) if payload else RuntimeError("espeak-ng child process died")
    if isinstance(result, BaseException):
        raise result
    return result


def _speak_here(text: str, voice: str, rate: int, pitch: int,
                amplitude: int) -> tuple[np.ndarray, int, list[Phoneme]]:
    lib, sample_rate = _library()
    chunks: list[np.ndarray] = []
    phonemes: list[Phoneme] = []

    def on_audio(wav, count, events):
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        k = 0
        while events[k].type != EVENT_LIST_TERMINATED:
            event = events[k]
            if event.type == EVENT_PHONEME:
                name = event.id.string.decode("ascii", "replace")
                phonemes.append(Phoneme(name, event.sample / sample_rate))
            k += 1
        return 0

    callback = _CALLBACK(on_audio)  # kept alive for the call
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise InputError(f"espeak-ng has no voice {voice}")
    for key, value in (("rate", rate), ("pitch", pitch), ("volume", amplitude)):
        lib.espeak_SetParameter(PARAMETER[key], int(value), 0)
    data = text.encode("utf-8") + b"\0"
    if lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None) != 0:
        raise InputError(f"espeak-ng could not speak {text!r}")
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return samples, sample_rate, phonemes
