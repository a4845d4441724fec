"""How torch's OpenMP threads wait: set before torch is first imported (pipeline.py imports this first).

torch's Linux wheels use GNU OpenMP (libgomp), whose threads spin for about 300,000 iterations at
every barrier before they sleep. On a machine whose cores are shared with other work (a second job,
a browser, a busy neighbour on a VM), a spinning thread holds a core the thread it waits for needs:
on this project's 2-core VM, with a training job running beside it, 20 s of speech took 17 s to
generate on two threads, 1.5 s with a 1,000-iteration spin, and 1.5 s on one thread. A short spin
keeps the quick hand-over of an idle machine. An explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
"""

import os

SPIN_COUNT = "1000"

if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
