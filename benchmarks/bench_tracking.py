"""tracking_overhead: the lmbench loop with MLflow per-step tracking on vs off.

Four trainers in one process, all on the same batches: tracking on/off at ``log_interval=1``
(every step logs train_loss, lr, tokens_seen and tokens_per_sec: the worst case, and the judged
number) and on/off at ``log_interval=10`` (the spec's default). "On" is a real ``Tracker`` on a
SQLite store in the scratch folder. A tracked repetition's time includes waiting until MLflow's
background thread has written everything the repetition logged (the futures of the asynchronous
``log_batch`` calls), so logging work cannot spill into the next timed window. (Not
``mlflow.flush_async_logging()``: it restarts the logging thread and waits out its 1 s queue
poll, a fixed latency that a run pays once, in ``Tracker.finish``.) Repetitions alternate
on/off (5 pairs of 100 steps per interval); the result is the median of the per-pair ratios, with
their range in the summary. Target: median ratio <= 1.03 at ``log_interval=1``.
"""

from __future__ import annotations

import statistics
import time

import common

TARGET = 1.03


class AsyncWrites:
    """Keeps the futures of a client's asynchronous ``log_batch`` calls so they can be awaited.

    ``Tracker.log_metrics`` itself is untouched; only ``tracker.client.log_batch`` is wrapped.
    """

    def __init__(self, tracker=None):
        self.tracker = tracker
        self.pending = []
        self.waited: list[float] = []  # seconds spent waiting for the writes, per repetition
        if tracker is not None:
            inner = tracker.client.log_batch

            def log_batch(*args, **kwargs):
                op = inner(*args, **kwargs)
                if op is not None:
                    self.pending.append(op)
                return op

            tracker.client.log_batch = log_batch

    def wait(self) -> None:
        t0 = time.perf_counter()
        if self.tracker is not None:
            self.tracker.flush()  # stored, incl. the Tracker's buffer and its background send
        for op in self.pending:
            op.wait()
        self.pending.clear()
        self.waited.append(time.perf_counter() - t0)


def main() -> None:
    args = common.parse_args(__doc__)
    work = common.setup(args)
    steps, pairs, warmup = (20, 2, 10) if args.smoke else (100, 5, 30)

    from lmbench.data import prepare_data
    from lmbench.tracking.tracker import Tracker

    uri = f"sqlite:///{work / 'tracking-bench.db'}"
    details: dict = {"steps_per_rep": steps, "pairs": pairs, "warmup_steps": warmup, "store": uri}
    trainers = {}
    trackers = []
    data = prepare_data(common.bench_spec().data)
    for interval in (1, 10):
        spec = common.bench_spec(f"train.log_interval={interval}", f"train.eval_interval={common.NEVER}",
                                 f"train.checkpoint_interval={common.NEVER}", "name=bench-tracking")
        tracker = Tracker(spec.experiment_name, uri)
        tracker.start(f"log_interval={interval}", {"train.log_interval": interval}, {"lmbench.kind": "bench"})
        trackers.append(tracker)
        on = (common.make_trainer(spec, data, tracker), AsyncWrites(tracker))
        off = (common.make_trainer(spec, data), AsyncWrites())
        trainers[interval] = (on, off)

    def segment(arm, n: int = steps) -> float:
        trainer, writes = arm

        def go():
            common.run_more(trainer, n)
            writes.wait()

        return common.timed(go)

    for on, off in trainers.values():
        segment(on, warmup)
        segment(off, warmup)

    for interval, (on, off) in trainers.items():
        a, b = common.interleaved(pairs, lambda on=on: segment(on), lambda off=off: segment(off),
                                  f"log_interval={interval}")
        details[f"log_interval_{interval}"] = {
            "on_wait_for_writes_s": on[1].waited[1:],  # [0] is the warm-up
            "ratio": common.ratio_stats(a, b),
            "on_ms_per_step": 1e3 * statistics.median(a) / steps,
            "off_ms_per_step": 1e3 * statistics.median(b) / steps,
            "on_s_per_rep": a, "off_s_per_rep": b,
        }
    for tracker in trackers:
        tracker.finish("FINISHED")

    r1 = details["log_interval_1"]["ratio"]["median"]
    d1 = details["log_interval_1"]
    common.emit(common.result(
        "tracking_overhead", value=r1, unit="x", target=f"<= {TARGET} (log_interval=1)",
        passed=r1 <= TARGET,
        summary=(f"{common.span(d1['ratio'], '{:.3f}')}x at log_interval=1 ({d1['on_ms_per_step']:.1f} vs "
                 f"{d1['off_ms_per_step']:.1f} ms/step); "
                 f"{common.span(details['log_interval_10']['ratio'], '{:.3f}')}x at log_interval=10"),
        details=details, smoke=args.smoke,
    ))


if __name__ == "__main__":
    main()
