"""The deadline guard with an injected clock: training ends before its budget less the margin, and the
run directory's model is always complete and loadable (it is swapped atomically)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from transformers import TrainerControl

from godminer.clock import ManualClock
from godminer.devnet import datasets
from godminer.training import evaluate
from godminer.training.artifacts import ModelSlot
from godminer.training.callbacks import DeadlineGuard, TimeAwareSchedule
from godminer.training.common import RunSpec
from godminer.training.run import run_training
from godminer.training.tiny import build_model


def test_guard_stops_before_step_and_evaluation_would_overrun():
    clock = ManualClock(0.0)
    guard = DeadlineGuard(train_until=100.0, now=clock.now, reserve_s=5.0)
    control = TrainerControl()
    for _ in range(3):  # three steps of 10 s
        guard.on_step_begin(None, None, control)
        clock.advance(10)
        guard.on_step_end(None, None, control)
    assert not control.should_training_stop
    guard.note_eval(30.0)
    guard.on_step_begin(None, None, control)
    clock.advance(10)
    guard.on_step_end(None, None, control)  # t=40: 40 + 15 + 30 + 5 = 90 < 100
    assert not control.should_training_stop and guard.can_evaluate()
    guard.on_step_begin(None, None, control)
    clock.advance(10)
    guard.on_step_end(None, None, control)  # t=50: 50 + 15 + 30 + 5 = 100 → stop
    assert control.should_training_stop and guard.stopped_because == "deadline"


def test_stop_event_stops_at_the_next_step():
    clock = ManualClock(0.0)
    stop = threading.Event()
    guard = DeadlineGuard(1e9, clock.now, stop=stop)
    control = TrainerControl()
    stop.set()
    guard.on_step_end(None, None, control)
    assert control.should_training_stop and guard.stopped_because == "stop requested"


def test_schedule_anneals_by_time_as_well_as_steps():
    clock = ManualClock(0.0)
    schedule = TimeAwareSchedule([1.0], warmup_steps=2, min_lr_rate=0.25, now=clock.now, train_until=100.0)
    assert schedule.factor(0, 1000) == 0.5 and schedule.factor(1, 1000) == 1.0
    assert schedule.factor(2, 1000) == pytest.approx(1.0)
    clock.advance(50)  # half the time gone, almost no steps: the rate follows the clock
    assert schedule.factor(3, 1000) == pytest.approx(0.625)
    clock.advance(60)
    assert schedule.factor(4, 1000) == pytest.approx(0.25)


class TickingClock:
    """Each read of the clock moves it forward: training 'takes time' without real sleeping."""

    def __init__(self, start: float, tick: float) -> None:
        self.t = start
        self.tick = tick
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.t += self.tick
            return self.t


@pytest.mark.slow
def test_training_ends_before_the_budget_and_the_model_is_always_complete(tmp_path):
    base = build_model(tmp_path / "base")
    (tmp_path / "train.json").write_text(json.dumps(datasets.instruct_rows(400)))
    start = time.time()
    clock = TickingClock(start, 0.5)
    spec = RunSpec(
        run_dir=str(tmp_path / "run"), kind="instruct", base_model=str(base), model_path=str(base),
        dataset_path=str(tmp_path / "train.json"), dataset_type=datasets.INSTRUCT_TYPE,
        train_until=start + 120.0, budget_s=120.0, overrides={"method": "lora"},
    )
    spec.save()
    slot = ModelSlot(tmp_path / "run")
    seen: list[str] = []
    broken: list[str] = []
    done = threading.Event()

    def watch() -> None:  # a reader (the publisher, a crash) must never see half a model
        while not done.is_set():
            current = slot.current()
            if current is not None:
                names = {p.name for p in current.iterdir()}
                if not {"adapter_config.json", "adapter_model.safetensors", "godminer.json"} <= names:
                    broken.append(str(sorted(names)))
                seen.append(current.name)
            time.sleep(0.001)

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        assert run_training(tmp_path / "run", now=clock) == 0
    finally:
        done.set()
        reader.join()
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["stopped_because"] == "deadline"
    events = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert events and max(e["ts"] for e in events) <= spec.train_until
    planned_steps = 3 * 45  # 3 epochs of the 360 training rows at a global batch of 8
    assert 0 < result["steps"] < planned_steps
    assert not broken and len(set(seen)) >= 2
    evaluate.load_submission(slot.current())
