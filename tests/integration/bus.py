"""The master's event bus as the end-to-end tests watch it."""

import threading
import time


class Bus:
    """Every event on the master's bus, with the time it was seen here."""

    def __init__(self, lab):
        self.lab = lab
        self.seen = []
        self._stop = threading.Event()
        self._thread = None
        self.listen()

    def listen(self):
        if self._thread:
            self._stop.set()
            self._thread.join()
            self._stop.clear()
        listener = self.lab.events()
        self._thread = threading.Thread(target=self._run, args=(listener,), daemon=True)
        self._thread.start()

    def _run(self, listener):
        while not self._stop.is_set():
            try:
                event = listener.get_event(wait=0.5, full=True)
            except Exception:  # pylint: disable=broad-except
                time.sleep(0.2)
                continue
            if event:
                self.seen.append((time.time(), event["tag"], event["data"]))

    def mark(self):
        return len(self.seen)

    def since(self, mark, prefix="hastack/failover/"):
        return [(t, tag, data) for t, tag, data in self.seen[mark:] if tag.startswith(prefix)]

    def wait(self, mark, predicate, timeout, prefix="hastack/failover/"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, tag, data in self.since(mark, prefix):
                if predicate(tag, data):
                    return t, tag, data
            time.sleep(0.2)
        raise AssertionError(
            f"no such event within {timeout} s; seen: {[tag for _, tag, _ in self.since(mark)]}"
        )

    def steps(self, mark, incident):
        return [tag.rsplit("/", 1)[1] for _, tag, _ in self.since(mark) if f"/{incident}/" in tag]

    def signal_jobs(self, mark):
        """The failover.signal runner jobs started since ``mark``."""
        return [
            data
            for _, tag, data in self.since(mark, "salt/run/")
            if tag.endswith("/new") and data.get("fun") == "runner.failover.signal"
        ]

    def close(self):
        self._stop.set()
