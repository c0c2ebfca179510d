"""The routes a G.O.D validator calls, with their exact paths (protocol.md §2). Thin: translate only.

Every decision is a 200 with a JSON body; authentication failures are 401/403, malformed bodies
422, a missing submission 404. Plain Starlette routes (no dependency injection) keep the offer
path short; blocking work (the store) runs in the thread pool.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.routing import Route

from godminer.api.auth import Authenticator, HttpError
from godminer.engine.miner import Miner
from godminer.protocol.payloads import (
    MinerTaskOffer,
    MinerTaskResponse,
    TournamentType,
    TrainingRepoResponse,
    TrainRequestGrpo,
    TrainRequestImage,
    TrainRequestText,
    TrainResponse,
)
from godminer.settings import TournamentSettings

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise HttpError(422, exc.errors(include_url=False, include_context=False, include_input=False)) from exc


def validator_routes(auth: Authenticator, miner: Miner, tournament: TournamentSettings) -> list[Route]:
    async def offer(request: Request, route: str) -> JSONResponse:
        body = await request.body()
        validator = auth.check(request.headers, body)
        payload = parse_body(MinerTaskOffer, body)
        # Decided in the loop from memory (tens of µs); only an acceptance writes to the database.
        decision = miner.decide_offer(payload, validator, route)
        return JSONResponse(MinerTaskResponse(message=decision.reason, accepted=decision.accepted).model_dump())

    async def task_offer(request: Request) -> JSONResponse:
        return await offer(request, "text")

    async def task_offer_image(request: Request) -> JSONResponse:
        return await offer(request, "image")

    async def start(request: Request, model: type[TrainRequestText | TrainRequestGrpo | TrainRequestImage]) -> Any:
        body = await request.body()
        validator = auth.check(request.headers, body)
        payload = parse_body(model, body)
        result = await run_in_threadpool(miner.start_training, payload, validator)
        return JSONResponse(TrainResponse(message=result.message, task_id=payload.task_id).model_dump())

    async def start_training(request: Request) -> JSONResponse:
        return await start(request, TrainRequestText)

    async def start_training_grpo(request: Request) -> JSONResponse:
        return await start(request, TrainRequestGrpo)

    async def start_training_image(request: Request) -> JSONResponse:
        return await start(request, TrainRequestImage)

    async def get_latest_model_submission(request: Request) -> JSONResponse:
        task_id = request.path_params["task_id"]
        auth.check(request.headers, None)
        submission = await run_in_threadpool(miner.submission, task_id)
        if submission is None:
            raise HttpError(404, f"No submission for task {task_id}")
        return JSONResponse(submission.model_dump())

    async def training_repo(request: Request) -> JSONResponse:
        task_type = request.path_params["task_type"]
        auth.check(request.headers, None)
        try:
            kind = TournamentType(task_type)
        except ValueError as exc:
            raise HttpError(422, f"task_type must be 'text' or 'image', not {task_type!r}") from exc
        repo = tournament.text if kind is TournamentType.TEXT else tournament.image
        answer = TrainingRepoResponse(github_repo=repo.github_repo, commit_hash=repo.commit_hash)
        return JSONResponse(answer.model_dump())

    return [
        Route("/task_offer/", task_offer, methods=["POST"]),
        Route("/task_offer_image/", task_offer_image, methods=["POST"]),
        Route("/start_training/", start_training, methods=["POST"]),
        Route("/start_training_grpo/", start_training_grpo, methods=["POST"]),
        Route("/start_training_image/", start_training_image, methods=["POST"]),
        Route("/get_latest_model_submission/{task_id}", get_latest_model_submission, methods=["GET"]),
        Route("/training_repo/{task_type}", training_repo, methods=["GET"]),
    ]
