"""What the model learns from and is measured against.

    beat2.py    BEAT2-layout folders (smplxflame_30/, wave16k/, train_test_split.csv): clips and training windows
    corpus/     the built-in corpus: espeak-ng speech with its timed phonemes, and motion animated from it
    baseline.py the rule-based generator (the corpus's animator on any speech): a method in its own right
"""
