"""Publishes one message of every type through shared memory until a line arrives on stdin, for
tests/test_shm_transport.py: ``python -m tests.shm_publisher``. The threshold is set low, so that
every array too big to travel inline in the header goes through the pool."""

from __future__ import annotations

import select
import sys
from contextlib import ExitStack

from fusion_stream.runtime.transport import Publisher
from fusion_stream.sources import testpattern

SEED = 3
THRESHOLD = 1024


def main() -> None:
    messages = testpattern.sample_messages(SEED)
    with ExitStack() as stack:
        pubs = {t: stack.enter_context(Publisher(t, shm=True, shm_threshold=THRESHOLD)) for t in messages}
        print("ready", flush=True)
        while not select.select([sys.stdin], [], [], 0.02)[0]:
            for topic, msg in messages.items():
                pubs[topic].publish(msg)


if __name__ == "__main__":
    main()
