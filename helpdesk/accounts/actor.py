"""Who acts: an agent through the console, a token through the API, or the system (workers,
intake, the command line). The services receive one Actor and check roles through `require`
alone, so a rule such as "unblocking needs a manager" refuses a console agent and an API token
of the same role alike, wherever it is called from."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import select

from helpdesk.accounts.models import Agent, Membership, Role
from helpdesk.accounts.tokens import ApiToken
from helpdesk.errors import Forbidden, NotFound
from helpdesk.extensions import db


class ActorKind(enum.StrEnum):
    AGENT = "agent"
    TOKEN = "token"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    brand_id: int | None
    role: Role | None
    agent_id: int | None = None
    token_id: int | None = None
    name: str = "the system"

    @classmethod
    def for_agent(cls, agent: Agent, brand_id: int, role: Role | None = None) -> Actor:
        """An agent acting in a brand; the role is looked up when the caller has not loaded it
        (None afterwards: not a member, and every check answers NotFound)."""
        if role is None:
            role = db.session.scalar(
                select(Membership.role).where(
                    Membership.agent_id == agent.id, Membership.brand_id == brand_id
                )
            )
        return cls(ActorKind.AGENT, brand_id, role, agent_id=agent.id, name=agent.name)

    @classmethod
    def for_token(cls, token: ApiToken) -> Actor:
        return cls(
            ActorKind.TOKEN, token.brand_id, Role(token.role), token_id=token.id, name=token.name
        )

    @classmethod
    def system(cls, brand_id: int | None = None) -> Actor:
        """Workers, intake and the command line: trusted, so no role check refuses them."""
        return cls(ActorKind.SYSTEM, brand_id, None)

    @property
    def is_system(self) -> bool:
        return self.kind is ActorKind.SYSTEM

    def require(
        self, minimum: Role, what: str = "this", brand_id: int | None = None
    ) -> Role | None:
        """The one role check. `brand_id` is the brand of the thing acted on: another brand's
        thing is NotFound (brands never leak), a role below `minimum` is Forbidden."""
        if self.is_system:
            return None
        if self.role is None or (brand_id is not None and brand_id != self.brand_id):
            raise NotFound("no such thing in your brands")
        if self.role.rank < minimum.rank:
            if self.kind is ActorKind.TOKEN:
                raise Forbidden(f"{what} needs a {minimum.value} token")
            raise Forbidden(f"{what} needs the {minimum.value} role")
        return self.role


def as_actor(actor: Actor | Agent | None, brand_id: int) -> Actor:
    """The transition's adapter: services that still receive an Agent (console callers not yet
    moved) or None (the system) get the same Actor the moved callers pass."""
    if isinstance(actor, Actor):
        return actor
    if actor is None:
        return Actor.system(brand_id)
    return Actor.for_agent(actor, brand_id)


def agent_id_of(actor: Actor | Agent | None) -> int | None:
    """The agent behind an action, for event rows and notifications (None: a token, the system)."""
    if isinstance(actor, Actor):
        return actor.agent_id
    return actor.id if actor is not None else None
