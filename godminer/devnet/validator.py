"""A local validator for the demo and end-to-end checks: tasks, data over HTTP, offers, evaluation.

It does what a G.O.D validator does around one miner (protocol.md §4): splits each dataset into
train and test, serves the train split at a presigned-looking URL, offers the task, sends the
start-training request with a fresh ``expected_repo_name``, fetches the submission, checks the repo
name and the model hash (§4.6) against the published files, and evaluates the model on the test
split the way the evaluator scores that task type.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from godminer.devnet import datasets
from godminer.devnet.client import ValidatorClient
from godminer.protocol import keys
from godminer.publish.model_hash import model_hash

TASK_TYPES = {"instruct": "InstructTextTask", "chat": "ChatTask", "dpo": "DpoTask", "grpo": "GrpoTask"}


@dataclass
class Task:
    kind: str
    task_id: str
    hours: float
    train_rows: list[dict[str, Any]]
    test_rows: list[dict[str, Any]]
    expected_repo_name: str = field(default_factory=lambda: str(uuid.uuid4()))
    accepted: bool = False
    decision: str = ""
    started_at: float = 0.0
    submitted_after_s: float | None = None
    repo: str | None = None
    hash_check: str = "-"
    base_metric: float | None = None
    metric: float | None = None

    @property
    def task_type(self) -> str:
        return TASK_TYPES[self.kind]


class DataServer:
    """Serves files from a directory over HTTP on loopback, like the validator's S3 bucket."""

    def __init__(self, root: Path) -> None:
        handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
        handler.log_message = lambda *args: None  # type: ignore[method-assign]
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}?X-Amz-Expires=604800&X-Amz-Signature=demo"

    def __enter__(self) -> DataServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


class LocalValidator:
    def __init__(self, miner_url: str, miner_hotkey: str, model_dir: Path, model_params: int, bucket: Path) -> None:
        self.http = httpx.Client(base_url=miner_url)
        self.client = ValidatorClient(self.http, keys.dev_keypair(keys.DEV_VALIDATOR_URI), miner_hotkey)
        self.model_dir = model_dir
        self.model_params = model_params
        self.bucket = bucket
        bucket.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.http.close()

    def make_task(self, kind: str, rows: int, hours: float, seed: int = 0) -> Task:
        train, test = datasets.split(datasets.ROWS[kind](rows, seed=seed))
        return Task(kind=kind, task_id=str(uuid.uuid4()), hours=hours, train_rows=train, test_rows=test)

    def offer(self, task: Task) -> None:
        answer = self.client.offer({
            "ds_size": 100000, "model": str(self.model_dir), "hours_to_complete": task.hours, "task_id": task.task_id,
            "task_type": task.task_type, "model_params_count": self.model_params,
        }).json()
        task.accepted, task.decision = bool(answer["accepted"]), answer["message"]

    def start_training(self, task: Task, data: DataServer) -> None:
        name = f"{uuid.uuid4().hex[:16]}_train_data.json"
        (self.bucket / name).write_text(json.dumps(task.train_rows))
        task.started_at = time.time()
        self.client.start_training({
            "model": str(self.model_dir), "task_id": task.task_id, "hours_to_complete": task.hours,
            "expected_repo_name": task.expected_repo_name, "dataset": data.url(name),
            "dataset_type": datasets.DATASET_TYPES[task.kind], "file_format": "s3",
        })

    def collect(self, task: Task, published_root: Path) -> bool:
        """Fetch the submission; check the repo name and the hash as the validator does. True once it is in."""
        response = self.client.submission(task.task_id)
        if response.status_code != 200:
            return False
        answer = response.json()
        task.repo = answer["repo"]
        task.submitted_after_s = time.time() - task.started_at
        if task.repo.split("/")[-1] != task.expected_repo_name:
            task.hash_check = "repo name mismatch"
            return True
        claimed = answer.get("model_hash")
        actual = model_hash(published_root / task.repo)
        task.hash_check = "ok" if claimed == actual else ("no hash" if claimed is None else "MISMATCH")
        return True

    def evaluate(self, task: Task, published_root: Path) -> None:
        """The validator's metric on the test split, for the base model and the submission."""
        from godminer.training import evaluate
        from godminer.training.common import load_tokenizer

        tokenizer = load_tokenizer(str(self.model_dir))
        base = evaluate.load_submission(self.model_dir)
        submitted = evaluate.load_submission(published_root / str(task.repo))
        dataset_type = datasets.DATASET_TYPES[task.kind]
        if task.kind in ("instruct", "chat"):
            task.base_metric = evaluate.sft_loss(base, tokenizer, task.test_rows, task.kind, dataset_type, 256)
            task.metric = evaluate.sft_loss(submitted, tokenizer, task.test_rows, task.kind, dataset_type, 256)
        elif task.kind == "dpo":
            reference = evaluate.load_submission(self.model_dir)
            task.base_metric = evaluate.dpo_loss(base, reference, tokenizer, task.test_rows, dataset_type)
            task.metric = evaluate.dpo_loss(submitted, reference, tokenizer, task.test_rows, dataset_type)
        else:
            task.base_metric = evaluate.grpo_reward(base, tokenizer, task.test_rows, dataset_type)
            task.metric = evaluate.grpo_reward(submitted, tokenizer, task.test_rows, dataset_type)
