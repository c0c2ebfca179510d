"""Pure planning: the plan's GPU rule, spreading, EDF, feasibility against deadlines."""

from __future__ import annotations

from godminer import sizing
from godminer.engine.estimates import demand, rows_for_hours
from godminer.engine.scheduler import Gpu, Reservation, idle_gpus_at, place, plan, utilisation
from godminer.settings import EstimateSettings, GpuSettings

NOW = 0.0
BOX = [Gpu(i, 80.0) for i in range(4)]


def job(task_id, params_b=8.0, hours=4.0, kind="instruct", received_at=NOW):
    return demand(task_id=task_id, kind=kind, params_b=params_b, hours=hours, received_at=received_at,
                  gpu_memory_gb=80.0, gpus=GpuSettings(), est=EstimateSettings(), min_train_fraction=0.5)


def test_two_8b_jobs_and_one_70b_job_run_concurrently_on_four_gpus():
    placements = plan(BOX, [], [job("a"), job("b"), job("big", params_b=70.0, hours=8)], NOW, 300)
    assert all(p.feasible for p in placements.values())
    assert len(placements["big"].gpu_ids) == 2
    assert len(placements["a"].gpu_ids) == len(placements["b"].gpu_ids) == 1
    used = [g for p in placements.values() for g in p.gpu_ids]
    assert sorted(used) == [0, 1, 2, 3]
    # All three start as soon as their model is downloaded: nobody waits for a GPU.
    assert all(p.start == job(t, **kw).ready_at for t, p, kw in
               [("a", placements["a"], {}), ("b", placements["b"], {}), ("big", placements["big"], {"params_b": 70.0})])


def test_small_jobs_spread_instead_of_stacking():
    placements = plan(BOX, [], [job(f"j{i}", params_b=1.0) for i in range(4)], NOW, 300)
    assert sorted(p.gpu_ids[0] for p in placements.values()) == [0, 1, 2, 3]


def test_sharing_a_gpu_when_allowed_and_memory_fits():
    running = [Reservation(f"r{i}", "local", (i,), 20.0, NOW, NOW + 8 * 3600) for i in range(4)]
    alone = place(job("x", params_b=1.0), BOX, running, NOW, 300, max_jobs_per_gpu=1)
    shared = place(job("x", params_b=1.0), BOX, running, NOW, 300, max_jobs_per_gpu=2)
    assert not alone.feasible
    assert shared.feasible and shared.start == job("x", params_b=1.0).ready_at


def test_earliest_deadline_first_and_waiting_for_a_gpu():
    running = [Reservation("r", "local", (0,), 70.0, NOW, NOW + 3600)]
    placements = plan([Gpu(0, 80.0)], running, [job("late", hours=10), job("soon", hours=6)], NOW, 300)
    assert placements["soon"].start == NOW + 3600
    assert placements["soon"].feasible
    # "soon" holds the GPU until its deadline margin, so "late" could train under half its budget.
    assert not placements["late"].feasible
    short = plan([Gpu(0, 80.0)], running, [job("late", hours=10), job("soon", hours=2, params_b=1.0)], NOW, 300)
    assert short["soon"].feasible and short["late"].feasible
    assert short["late"].start >= short["soon"].release_at


def test_training_stops_before_deadline_less_save_and_publish():
    d = job("a", params_b=70.0, hours=2)
    p = place(d, BOX, [], NOW, 300)
    assert p.feasible
    assert p.train_until + d.save_s + d.upload_s + 300 <= d.deadline + 1e-6


def test_infeasible_when_gpus_free_too_late():
    running = [Reservation(f"r{i}", "local", (i,), 70.0, NOW, NOW + 3 * 3600) for i in range(4)]
    p = place(job("a", hours=3), BOX, running, NOW, 300)
    assert not p.feasible and "minimum" in p.reason


def test_unhealthy_gpus_are_not_used():
    box = [Gpu(0, 80.0, healthy=False), Gpu(1, 80.0)]
    p = place(job("a"), box, [], NOW, 300)
    assert p.gpu_ids == (1,)
    assert not place(job("a"), [Gpu(0, 80.0, healthy=False)], [], NOW, 300).feasible


def test_boxes_are_not_mixed_for_one_job():
    two_boxes = [Gpu(0, 80.0, box="a"), Gpu(1, 80.0, box="a"), Gpu(0, 80.0, box="b"), Gpu(1, 80.0, box="b")]
    p = place(job("big", params_b=110.0, hours=8), two_boxes, [], NOW, 300)
    assert not p.feasible and "largest has 2" in p.reason
    ok = place(job("mid", params_b=50.0, hours=8), two_boxes, [], NOW, 300)
    assert ok.feasible and len(ok.gpu_ids) == 2


def test_idle_and_utilisation():
    running = [Reservation("r", "local", (0, 1), 40.0, NOW, NOW + 100)]
    assert idle_gpus_at(BOX, running, NOW + 50) == 2
    assert idle_gpus_at(BOX, running, NOW + 150) == 4
    assert utilisation(BOX, running, NOW, NOW + 200) == 0.25


def test_sizing_rules():
    assert sizing.params_b(None, "unsloth/Llama-3.2-3B-Instruct", "instruct") == 3.0
    assert sizing.params_b(7_615_616_512, "x", "instruct") == 7.615616512
    assert sizing.params_b(None, "black-forest-labs/FLUX.1-dev", "flux") == 12.0
    assert sizing.finetune_method(1.5, "instruct") == "full" and sizing.finetune_method(8, "instruct") == "lora"
    assert 64 <= sizing.lora_rank(70) <= sizing.lora_rank(8) <= 256
    assert rows_for_hours(10) > rows_for_hours(2)
