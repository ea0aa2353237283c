"""Prompts as data at the gateway: people push prompt versions and move their labels; the
registry (``VersionRegistered`` with the body, ``VersionPromoted`` with ``alias`` = the label)
is where every service reads them, live.

- ``POST /v1/prompts`` (operator): ``{name, description, system, user}``, checked by
  :func:`ragops_shared.prompts.prompt_body` (422 with the reason). Its version is the next
  integer after every version of that name (registered or seed). A body with the sha256 of an
  existing version answers 200 with that version and publishes nothing; otherwise a
  ``VersionRegistered`` signed with the gateway's key is published, and the answer (201
  ``{name, version, sha256}``) comes once the gateway's registry view has read it back.
- ``GET /v1/prompts``, ``GET /v1/prompts/{name}``, ``GET /v1/prompts/{name}/versions/{version}``
  (operator, approver, auditor, analyst): names, versions and labels; one version's text.
- ``POST /v1/prompts/{name}/labels`` (operator): ``{label, version, reason}``. The version must
  be registered and not retired (422). A label in ``RAGOPS_GATEWAY_PROMPT_LABELS_NEEDING_APPROVAL``
  (default ``production``) is requested as a four-eyes promote change (202 with its
  ``change_id``; :mod:`ragops_gateway.changes`); any other is set at once (200).

Only principals of the platform's tenant push or label (403 otherwise): a prompt is served to
every tenant. At start the gateway registers every seed version (the files packaged with
:mod:`ragops_shared.prompts`) the registry holds no body of, with an event id derived from the
version's name, number and hash (:func:`ragops_schemas.ids.prompt_registration_id`), so
replicas starting together publish one version.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ragops_gateway.changes import ChangeRefused, ControlPlane, request_change
from ragops_gateway.spec import SPEC
from ragops_models.defaults import shipped_model_dirs
from ragops_schemas import PromptBody, VersionPromoted, VersionRegistered, utc_now
from ragops_schemas.changes import PromoteChange, Reason
from ragops_schemas.events import PromptName
from ragops_schemas.ids import new_event_id, prompt_registration_id
from ragops_schemas.lifecycle import VersionRef
from ragops_schemas.registry import Registry
from ragops_shared.identity import Principal
from ragops_shared.prompts import PromptNotFoundError, prompt_body, prompt_version, seed_prompts
from ragops_shared.registry_view import RegistryView
from ragops_shared.signing import verifier_for

log = structlog.get_logger(__name__)

Label = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class PromptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PromptName
    description: str = Field(default="", max_length=2000, description="What the version changes and why.")
    system: str = Field(description="Jinja2 template of the system message (variables: question, contexts).")
    user: str = Field(description="Jinja2 template of the user message.")


class PromptPushed(BaseModel):
    name: str
    version: int
    sha256: str
    registered: bool = Field(description="false: the text of an existing version (that version); nothing published.")


class PromptVersionOut(BaseModel):
    version: int
    sha256: str
    description: str
    retired: bool
    labels: list[str]


class PromptOut(BaseModel):
    name: str
    versions: list[PromptVersionOut] = Field(description="Oldest first.")
    labels: dict[str, int] = Field(description="label -> the version it points at.")


class PromptTextOut(PromptVersionOut):
    name: str
    system: str
    user: str


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Label
    version: int = Field(ge=1)
    reason: Reason


class LabelOut(BaseModel):
    name: str
    label: str
    version: int
    status: Literal["applied", "pending"] = Field(description="pending: a change waits for another person's approval.")
    change_id: str | None = None


def _numbers(registry: Registry, name: str) -> list[int]:
    """The version numbers of prompt ``name``: registered and seed, ascending."""
    registered = {int(s.ref.version) for s in registry.versions("prompt", name) if s.ref.version.isdecimal()}
    seeds = {seed.version for seed in seed_prompts() if seed.name == name}
    return sorted(registered | seeds)


def _out(registry: Registry, name: str) -> PromptOut | None:
    """What is known of prompt ``name``; None when nothing is."""
    labels = {label: int(version) for label, version in registry.aliases("prompt", name).items()}
    versions = []
    for number in _numbers(registry, name):
        try:
            template = prompt_version(registry, name, number)
        except PromptNotFoundError:  # promoted or retired, never registered with a body or a seed
            continue
        versions.append(
            PromptVersionOut(
                version=number,
                sha256=template.sha256,
                description=template.description,
                retired=registry.is_retired("prompt", name, str(number)),
                labels=sorted(label for label, version in labels.items() if version == number),
            )
        )
    return PromptOut(name=name, versions=versions, labels=labels) if versions else None


class PromptBook:
    """The gateway's registry view, and what it publishes to it. :meth:`start` once the broker
    runs: it reads the registry to its end, then registers the missing seed versions."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        settings = plane.settings
        self.view = RegistryView(
            settings.kafka,
            f"ragops-{SPEC.name}-registry",
            verifier=verifier_for(settings.platform, shipped_model_dirs()),
            dead_letters=plane.publisher,
        )
        self.registry = self.view.registry
        # One push at a time per replica: a version number is chosen and published before the next.
        self.pushing = asyncio.Lock()

    async def start(self) -> None:
        await self.view.start()
        await self.view.send_dead_letters()
        missing = []
        for seed in seed_prompts():
            state = self.registry.get("prompt", seed.name, str(seed.version))
            if state is None or state.registered is None or state.registered.prompt is None:
                await self.publish(seed.name, seed.version, seed.body(), {"source": "seed"})
                missing.append(seed.version)
        if missing and not await self.view.caught_up(self.plane.settings.publish_timeout_s):
            raise TimeoutError("the seed prompt versions were not read back in time")
        log.info("prompt_seeds_registered", versions=missing)

    async def stop(self) -> None:
        await self.view.stop()

    async def publish(self, name: str, version: int, body: PromptBody, metadata: dict[str, str]) -> None:
        """Publish the registration of version ``version`` of ``name``.

        Raises:
            HTTPException: 503 the broker did not take it.
        """
        settings = self.plane.settings
        await self.plane.publish(
            VersionRegistered(
                event_id=prompt_registration_id(name, version, body.sha256),
                producer=self.plane.producer,
                tenant=settings.platform.tenant,
                kind="prompt",
                name=name,
                version=str(version),
                prompt=body,
                metadata=metadata,
            )
        )


def add_prompt_routes(
    app: FastAPI,
    caller: Callable[[str, str], Callable[[Request], Awaitable[Principal]]],
    book: PromptBook,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Add the prompt routes (see the module's docstring) to ``app``, each behind the guard
    ``caller`` gives for its method and path (the gateway's route table)."""
    plane, registry = book.plane, book.registry
    settings = plane.settings
    platform = settings.platform.tenant
    Pusher = Annotated[Principal, Depends(caller("POST", "/v1/prompts"))]
    Labeller = Annotated[Principal, Depends(caller("POST", "/v1/prompts/{name}/labels"))]
    Lister = Annotated[Principal, Depends(caller("GET", "/v1/prompts"))]
    Reader = Annotated[Principal, Depends(caller("GET", "/v1/prompts/{name}"))]
    TextReader = Annotated[Principal, Depends(caller("GET", "/v1/prompts/{name}/versions/{version}"))]

    def on_the_platform(principal: Principal) -> None:
        if principal.tenant != platform:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"prompts are pushed and labelled in the platform's tenant ({platform})"
            )

    @app.post("/v1/prompts", status_code=status.HTTP_201_CREATED, tags=["prompts"])
    async def push(body: PromptIn, principal: Pusher, response: Response) -> PromptPushed:
        """Register a new version of a prompt (201), or name the existing version with the same text (200)."""
        on_the_platform(principal)
        try:
            checked = await asyncio.to_thread(prompt_body, body.description, body.system, body.user)
        except ValueError as refusal:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(refusal)) from None
        async with book.pushing:
            # Versions another replica registered just before are numbered past, not over.
            if not await book.view.caught_up(settings.publish_timeout_s):
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the registry could not be read in time")
            known = _out(registry, body.name)
            same = [v.version for v in known.versions if v.sha256 == checked.sha256] if known else []
            if same:
                response.status_code = status.HTTP_200_OK
                return PromptPushed(name=body.name, version=same[0], sha256=checked.sha256, registered=False)
            version = max(_numbers(registry, body.name), default=0) + 1
            await book.publish(body.name, version, checked, {"pushed_by": principal.subject})
            if not await book.view.caught_up(settings.publish_timeout_s):
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the version was not read back in time")
        state = registry.get("prompt", body.name, str(version))
        if state is None or state.registered is None or state.registered.prompt != checked:
            raise HTTPException(status.HTTP_409_CONFLICT, f"version {version} of {body.name} was registered meanwhile")
        log.info("prompt_pushed", prompt=body.name, version=version, sha256=checked.sha256, by=principal.subject)
        return PromptPushed(name=body.name, version=version, sha256=checked.sha256, registered=True)

    @app.get("/v1/prompts", tags=["prompts"])
    async def list_prompts(principal: Lister) -> list[PromptOut]:
        """Every prompt: its versions and labels."""
        names = sorted({state.ref.name for state in registry.versions("prompt")} | {s.name for s in seed_prompts()})
        return [out for name in names if (out := _out(registry, name)) is not None]

    @app.get("/v1/prompts/{name}", tags=["prompts"])
    async def show(name: str, principal: Reader) -> PromptOut:
        """One prompt's versions and labels; 404 when it has none."""
        out = _out(registry, name)
        if out is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no prompt {name}")
        return out

    @app.get("/v1/prompts/{name}/versions/{version}", tags=["prompts"])
    async def text(name: str, version: int, principal: TextReader) -> PromptTextOut:
        """One version's text; 404 when it does not exist."""
        out = _out(registry, name)
        listed = [v for v in out.versions if v.version == version] if out else []
        if not listed:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no version {version} of prompt {name}")
        template = prompt_version(registry, name, version)
        return PromptTextOut(**listed[0].model_dump(), name=name, system=template.system, user=template.user)

    @app.post("/v1/prompts/{name}/labels", tags=["prompts"], responses={202: {"model": LabelOut}})
    async def label(name: PromptName, body: LabelIn, principal: Labeller, response: Response) -> LabelOut:
        """Point ``label`` at a version: at once (200), or once another person approves the change (202)."""
        on_the_platform(principal)
        out = _out(registry, name)
        listed = [v for v in out.versions if v.version == body.version] if out else []
        if not listed or listed[0].retired:
            state = "is retired" if listed else "is not registered"
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"version {body.version} of {name} {state}")
        ref = VersionRef(kind="prompt", name=name, version=str(body.version))
        previous = registry.aliases("prompt", name).get(body.label)
        if body.label in settings.prompt_labels_needing_approval:
            change = PromoteChange(version=ref, alias=body.label, previous_version=previous)
            try:
                requested = request_change(
                    principal,
                    change,
                    body.reason,
                    plane.producer,
                    platform_tenant=platform,
                    ttl=settings.change_ttl,
                    now=clock(),
                )
            except ChangeRefused as refusal:
                raise HTTPException(refusal.status_code, str(refusal)) from None
            await plane.publish(requested)
            plane.book.apply(requested)  # this replica lists it at once
            response.status_code = status.HTTP_202_ACCEPTED
            log.info("prompt_label_requested", prompt=name, label=body.label, change_id=requested.change_id)
            return LabelOut(
                name=name, label=body.label, version=body.version, status="pending", change_id=requested.change_id
            )
        promoted = VersionPromoted(
            event_id=new_event_id(),
            producer=plane.producer,
            tenant=principal.tenant,
            **ref.model_dump(),
            alias=body.label,
            previous_version=previous,
            reason=f"{body.reason} (labelled by {principal.name})",
        )
        await plane.publish(promoted)
        if not await book.view.caught_up(settings.publish_timeout_s):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the label was not read back in time")
        log.info("prompt_labelled", prompt=name, label=body.label, version=body.version, by=principal.subject)
        return LabelOut(name=name, label=body.label, version=body.version, status="applied")
