"""An action and the registry of one entity's actions: what every front end needs to offer
it (name, label, descriptions), whether it applies and why not, the permission to apply it
to someone else's work, how to run it (through the services) and what to say when done.

The front ends never switch on an action's name: they read these fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from jobs import selectors
from jobs.engine.errors import JobActionError

T = TypeVar("T")


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class Option:
    """A yes/no option of an action that makes it another entry of the registry (cancel
    with `force` is force-stop): a flag on the CLI (`--force`), a body field in the API."""

    name: str  # the API body field; the CLI flag is --name-with-dashes
    action: str  # the entry it turns the action into
    help: str  # the CLI flag's help

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def always(obj: Any) -> bool:
    return True


def no_reason(obj: Any) -> str:
    return ""


def through(service: Callable[..., Any], field: str, **fixed: Any) -> Callable[..., Any]:
    """An entry's `run`: the service, given the object as `field` and the acting user
    as `by` (and any `fixed` arguments: `force=True`)."""

    def run(obj: Any, *, by: Any) -> Any:
        return service(**{field: obj}, by=by, **fixed)

    return run


@dataclass(frozen=True)
class Action(Generic[T]):
    """One thing users do to an object (`T`: a job, a batch, a schedule).

    `name` is the URL slug and the CLI verb; `label` the button; `description` the admin
    action's; `help` the CLI verb's. `applies(obj)` says whether to offer it and
    `why_not(obj)` why not (the service's words: the service still has the last word).
    `run(obj, by=user)` calls the service; it returns the object changed, a job it
    started, or None when it deleted the object. `permission` (`change` or `delete`) is
    the model permission needed to apply it to someone else's work. `done` is the past
    tense for counts ("3 jobs cancelled"); `message(obj, result)` the one-object report
    and `report(changed)` the admin's count of what changed, when they say more than
    `done` ("Job #4 cancelled.", "3 jobs cancelled").
    """

    name: str
    label: str
    help: str
    run: Callable[..., Any]
    done: str
    description: str = ""  # default: "<Label> selected <objects>"
    applies: Callable[[T], bool] = always
    why_not: Callable[[T], str] = no_reason
    message: Callable[[T, Any], str] | None = None
    report: Callable[[list[T]], list[str]] | None = None
    permission: str = "change"
    admin_name: str = ""
    options: tuple[Option, ...] = ()
    danger: bool = False  # offered with a warning look (cancel, delete)
    confirm: str = ""  # the question a page asks before running it
    on_cli: bool = True  # a verb of its own (False: reached through another's option)
    tells_plan: bool = False  # the object's message then says what it will do


@dataclass(frozen=True)
class Registry(Generic[T]):
    """The actions of one entity. `model` names its permissions (`jobs.change_<model>`);
    `refusal(obj, action)` is what a user without them is told; `rule(user, obj, action)`
    replaces THE rule for an entity whose actions check each object they touch (batches:
    each job)."""

    model: str
    entries: tuple[Action[T], ...]
    refusal: Callable[[T, Action[T]], str]
    rule: Callable[[Any, T, Action[T]], bool] | None = None
    counted_as: str = ""  # the admin's one word for every action ("3 schedules done")

    def __post_init__(self) -> None:
        names = [action.name for action in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"Duplicate action names in the {self.model} registry: {names}")

    def __iter__(self) -> Iterator[str]:
        return iter(action.name for action in self.entries)

    def __contains__(self, name: object) -> bool:
        return any(action.name == name for action in self.entries)

    def __getitem__(self, name: str) -> Action[T]:
        for action in self.entries:
            if action.name == name:
                return action
        raise KeyError(name)

    def values(self) -> tuple[Action[T], ...]:
        return self.entries

    @property
    def plural(self) -> str:
        return self.model + ("es" if self.model.endswith("ch") else "s")

    def description(self, action: Action[T]) -> str:
        """The admin action's description."""
        return action.description or f"{action.label} selected {self.plural}"

    def may(self, user: Any, obj: T, action: Action[T]) -> bool:
        """THE rule (`selectors.may_act_for`): one's own, or the model permission."""
        if self.rule is not None:
            return self.rule(user, obj, action)
        owner_id = obj.owner_id  # type: ignore[attr-defined]
        return selectors.may_act_for(user, owner_id, action.permission, self.model)

    def check(self, user: Any, obj: T, action: Action[T]) -> None:
        if not self.may(user, obj, action):
            raise JobActionError(self.refusal(obj, action))

    def act(self, name: str, obj: T, user: Any, **given: Any) -> Any:
        """Check that `user` may, then run the action (JobActionError if either refuses);
        `given`: what else the action takes (a resume's changes)."""
        action = self[name]
        self.check(user, obj, action)
        return action.run(obj, by=user, **given)

    def said(self, action: Action[T], obj: T, result: Any) -> str:
        """What a page says after running `action` on one object."""
        if action.message is not None:
            return action.message(obj, result)
        return f"{self.model.capitalize()} #{obj.pk} {action.done}."  # type: ignore[attr-defined]

    def reported(self, action: Action[T], changed: list[T]) -> list[str]:
        """What the admin says after running `action` on the selected objects."""
        if action.report is not None:
            return action.report(changed)
        return [f"{plural(len(changed), self.model)} {self.counted_as or action.done}"]

    def chosen(self, name: str, given: dict[str, Any]) -> str:
        """The entry `name` becomes with these options set (cancel + force: force-stop)."""
        for option in self[name].options:
            if given.get(option.name):
                return option.action
        return name
