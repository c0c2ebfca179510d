"""Routes: exact paths, idempotent start-training, submissions from the store, bad input changes nothing."""

from __future__ import annotations

import json
import time

from conftest import make_instruct_request, make_offer

from godminer.engine.jobs import JobState
from godminer.protocol.payloads import MinerSubmission


def test_offer_then_start_training_creates_one_queued_job(validator, node, clock):
    offer = make_offer()
    assert validator.offer(offer).json()["accepted"] is True
    assert node.store.get(offer["task_id"]).state is JobState.ACCEPTED
    request = make_instruct_request(offer["task_id"])
    started = time.perf_counter()
    response = validator.start_training(request)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json() == {"message": "Training job enqueued.", "task_id": offer["task_id"]}
    assert elapsed < 2.0  # the dataset URL is not even resolvable: nothing is downloaded in the request
    job = node.store.get(offer["task_id"])
    assert job.state is JobState.QUEUED
    assert job.termination_at == clock.now() + 4 * 3600
    assert job.expected_repo_name == request["expected_repo_name"]
    assert [e["to_state"] for e in node.store.events(job.task_id)] == ["accepted", "queued"]


def test_start_training_is_idempotent(validator, node):
    request = make_instruct_request()
    for _ in range(3):
        assert validator.start_training(request).status_code == 200
    events = node.store.events(request["task_id"])
    assert [e["to_state"] for e in events] == ["queued"]


def test_repeated_start_training_with_new_repo_name_updates_the_job(validator, node, clock):
    request = make_instruct_request()
    validator.start_training(request)
    clock.advance(30)
    retry = dict(request, expected_repo_name="another-name")
    validator.start_training(retry)
    job = node.store.get(request["task_id"])
    assert job.expected_repo_name == "another-name"
    assert job.termination_at == clock.now() + 4 * 3600


def test_each_start_route_maps_to_its_task_type(validator, node):
    grpo = make_instruct_request(dataset_type={"field_prompt": "prompt", "reward_functions": [
        {"reward_func": "def f(completions, **kw):\n    return [1.0] * len(completions)", "reward_weight": 1.0}]})
    image = {"model": "stabilityai/stable-diffusion-xl-base-1.0", "task_id": "img-1", "hours_to_complete": 2.0,
             "expected_repo_name": "r", "dataset_zip": "https://s3/91ab_train_data.zip?q", "model_type": "sdxl"}
    chat = make_instruct_request(dataset_type={"chat_template": "chatml", "chat_column": "conversations",
                                               "chat_role_field": "from", "chat_content_field": "value",
                                               "chat_user_reference": "human", "chat_assistant_reference": "gpt"})
    for request in (grpo, image, chat):
        assert validator.start_training(request).status_code == 200
    assert node.store.get(grpo["task_id"]).task_type == "GrpoTask"
    assert node.store.get("img-1").kind == "sdxl"
    assert node.store.get(chat["task_id"]).kind == "chat"


def test_submission_answers_from_the_store(validator, node, clock):
    request = make_instruct_request()
    validator.start_training(request)
    assert validator.submission(request["task_id"]).status_code == 404
    task_id = request["task_id"]
    for state in (JobState.PREPARING, JobState.TRAINING, JobState.PUBLISHING):
        node.store.transition(task_id, state, clock.now())
    node.store.transition(task_id, JobState.SUBMITTED, clock.now(), repo=f"ns/{request['expected_repo_name']}",
                          model_hash="ab" * 32)
    response = validator.submission(task_id)
    assert response.status_code == 200
    assert MinerSubmission.model_validate(response.json()).repo.endswith(request["expected_repo_name"])
    assert response.json()["model_hash"] == "ab" * 32


def test_bad_input_gets_4xx_and_changes_nothing(validator, http, node):
    before = (node.store.state_counts(), len(node.store.offers()))
    cases = [
        ("/task_offer/", b"{not json"),
        ("/task_offer/", json.dumps({"model": "m"}).encode()),
        ("/task_offer/", json.dumps(make_offer(task_type="NoSuchTask")).encode()),
        ("/task_offer/", json.dumps(make_offer(hours_to_complete="soon")).encode()),
        ("/start_training/", json.dumps(make_instruct_request(hours_to_complete=-1)).encode()),
        ("/start_training/", json.dumps(make_instruct_request(dataset="")).encode()),
        ("/start_training_image/", json.dumps(make_instruct_request()).encode()),
        ("/start_training_grpo/", json.dumps({"model": "m", "task_id": "t", "hours_to_complete": 1,
                                              "dataset": "d", "dataset_type": {"reward_functions": [
                                                  {"reward_func": "def f(): pass", "reward_weight": -1}]}}).encode()),
        ("/start_training/", b"\xff\xfe\x00binary"),
        ("/start_training/", b"[]"),
    ]
    for path, body in cases:
        response = http.post(path, content=body, headers=validator.headers(body))
        assert 400 <= response.status_code < 500, (path, body, response.status_code)
        assert response.headers["content-type"].startswith("application/json")
    assert (node.store.state_counts(), len(node.store.offers())) == before


def test_wrong_offer_route_declines(validator):
    image_offer = make_offer(task_type="ImageTask", model="stabilityai/stable-diffusion-xl-base-1.0")
    response = validator.post("/task_offer/", image_offer)
    assert response.status_code == 200 and response.json()["accepted"] is False
    text_offer = make_offer()
    response = validator.post("/task_offer_image/", text_offer)
    assert response.status_code == 200 and response.json()["accepted"] is False


def test_training_repo_answers_from_config(validator, node):
    response = validator.get("/training_repo/text")
    assert response.status_code == 200
    assert response.json() == node.settings.tournament.text.model_dump()
    assert validator.get("/training_repo/video").status_code == 422


def test_unknown_routes_and_methods_are_json(http):
    for response in (http.get("/nope"), http.get("/task_offer/")):
        assert response.status_code in (404, 405)
        assert "detail" in response.json()
