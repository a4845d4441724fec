"""The built-in corpus: real TTS speech with procedurally animated SMPL-X motion, in the BEAT2 layout.

`make_corpus` writes it; `animate` is the audio-driven animator, which doubles as the rule-based
baseline. Import from the submodules (`asynfusion.data.corpus.make`, `.animate`, `.speech`) so that
`import asynfusion.data.corpus` stays cheap.
"""
