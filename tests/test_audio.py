import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile

from asynfusion.audio import (
    MEL_FEATURE_DIM,
    SAMPLE_RATE,
    AudioTooLong,
    SpeechEncoder,
    audio_features,
    audio_seconds,
    load_audio,
    mel_features,
    num_motion_frames,
)
from asynfusion.errors import InputError


@pytest.mark.parametrize("rate, channels, subtype", [(8000, 1, "PCM_16"), (22050, 2, "PCM_24"), (44100, 1, "FLOAT"),
                                                     (48000, 2, "PCM_16")])
def test_wav_variants_load_to_16k_mono(tmp_path, rate, channels, subtype, speech_like):
    signal = speech_like(1.5, rate)
    data = np.stack([signal] * channels, axis=1) if channels > 1 else signal
    soundfile.write(tmp_path / "a.wav", data, rate, subtype=subtype)
    samples = load_audio(tmp_path / "a.wav")
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 1.5 * SAMPLE_RATE) <= 2


@pytest.mark.parametrize("suffix, codec", [(".flac", None), (".ogg", None), (".mp3", None), (".m4a", "aac")])
def test_compressed_formats(tmp_path, suffix, codec, speech_like):
    soundfile.write(tmp_path / "a.wav", speech_like(1.0, 44100), 44100)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(tmp_path / "a.wav")]
    command += ["-c:a", codec] if codec else []
    subprocess.run(command + [str(tmp_path / f"a{suffix}")], check=True)
    samples = load_audio(tmp_path / f"a{suffix}")
    assert abs(len(samples) / SAMPLE_RATE - 1.0) < 0.1


def test_bad_audio_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_text("this is not audio at all\n" * 20)
    with pytest.raises(InputError, match="cannot decode"):
        load_audio(tmp_path / "text.wav")
    soundfile.write(tmp_path / "long.wav", np.zeros(16000 * 5, np.float32), 16000)
    with pytest.raises(InputError, match="longer than the 4 s cap"):
        load_audio(tmp_path / "long.wav", max_seconds=4)
    soundfile.write(tmp_path / "short.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(InputError, match="at least"):
        load_audio(tmp_path / "short.wav")


def test_exactly_the_cap_is_accepted(tmp_path, speech_like):
    soundfile.write(tmp_path / "cap.wav", speech_like(2.0), 16000)
    assert len(load_audio(tmp_path / "cap.wav", max_seconds=2.0)) == 32000


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_past_the_cap_names_the_length_or_keeps_the_start(tmp_path, suffix, speech_like):
    soundfile.write(tmp_path / "a.wav", speech_like(6.0, 22050), 22050)
    if suffix == ".mp3":
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "a.wav"),
                        str(tmp_path / "a.mp3")], check=True)
    path = tmp_path / f"a{suffix}"
    with pytest.raises(AudioTooLong) as refusal:
        load_audio(path, max_seconds=4)
    assert refusal.value.seconds == pytest.approx(6.0, abs=0.1) and refusal.value.cap == 4
    start = load_audio(path, max_seconds=4, trim=True)
    assert abs(len(start) - 4 * SAMPLE_RATE) <= 2
    whole = load_audio(path, max_seconds=10)
    np.testing.assert_allclose(start[SAMPLE_RATE:2 * SAMPLE_RATE], whole[SAMPLE_RATE:2 * SAMPLE_RATE], atol=0.05)
    assert audio_seconds(path) == pytest.approx(6.0, abs=0.1)


def test_features_are_frame_aligned(speech_like):
    samples = speech_like(2.5)
    features = mel_features(samples)
    assert features.shape == (num_motion_frames(len(samples)), MEL_FEATURE_DIM) == (75, 44)
    energy = features[:, 40]
    assert np.corrcoef(energy, np.abs(samples[: 75 * 533]).reshape(75, -1).mean(1))[0, 1] > 0.5


def librosa_mel_features(samples: np.ndarray) -> np.ndarray:
    """The features as librosa computes them: the reference the numpy implementation must match."""
    import librosa

    num_frames = num_motion_frames(len(samples))
    y = np.pad(samples, (0, max(0, 400 - len(samples))))
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40,
                                         fmin=60, fmax=7600)
    log_energy = np.log(librosa.feature.rms(y=y, frame_length=400, hop_length=160)[0] + 1e-5)
    onset = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=16000, hop_length=160)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=400, hop_length=160)[0]
    stacked = np.concatenate([np.log(mel + 1e-6), log_energy[None], onset[None],
                              np.diff(log_energy, prepend=log_energy[:1])[None], zcr[None]], axis=0).T
    frame_times, feature_times = np.arange(num_frames) / 30, np.arange(len(stacked)) / 100
    return np.stack([np.interp(frame_times, feature_times, column) for column in stacked.T], axis=1)


@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")  # librosa's note on the 0.02 s clip
@pytest.mark.parametrize("case", ["speech", "short", "shorter than a window", "silence", "clipped square"])
def test_features_match_librosa(case, speech_like):
    rng = np.random.default_rng(0)
    samples = {"speech": speech_like(3.0), "short": speech_like(0.3), "shorter than a window": speech_like(0.02),
               "silence": np.zeros(8000, np.float32),
               "clipped square": np.sign(rng.standard_normal(16000)).astype(np.float32)}[case]
    ours, reference = mel_features(samples), librosa_mel_features(samples)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_matches_librosa(tmp_path, rate, speech_like):
    import librosa

    samples = speech_like(1.3, rate)
    soundfile.write(tmp_path / "x.wav", samples, rate, subtype="FLOAT")
    expected = librosa.resample(samples.astype(np.float32), orig_sr=rate, target_sr=16000, res_type="soxr_hq")
    loaded = load_audio(tmp_path / "x.wav")
    assert len(loaded) == len(expected)
    np.testing.assert_allclose(loaded, np.clip(expected - expected.mean(), -1, 1), atol=1e-5)


def test_wav2vec2_encoder_from_a_local_directory(tmp_path, speech_like):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=4,
                            num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    encoder = SpeechEncoder(tmp_path / "w2v")
    features = audio_features(speech_like(1.0), 30, encoder=str(tmp_path / "w2v"))
    assert features.shape == (30, 16) and encoder.dim == 16 and np.all(np.isfinite(features))
    with pytest.raises(InputError, match="no speech encoder"):
        SpeechEncoder(tmp_path / "nothing")
