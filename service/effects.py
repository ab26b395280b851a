"""Effects that must wait for a commit: handing work to the workers, sending a webhook.

A domain operation that commits rows another process will act on (a queued photo, a
submitted case, a confirmed match) registers the effect with `after_commit(session,
effect)` in the same transaction. The effects run, in the order registered, once that
transaction has committed, so a worker never receives the id of a row it cannot yet
read; if the transaction rolls back (or the session closes without committing) they are
dropped, so nothing is sent for work that did not happen. The operation owns this, not
each route that calls it.

An effect that fails is logged and skipped: the rows are committed and whoever acts on
them recovers a lost message (the reaper re-queues `queued` rows; webhook retries
resend), so a broker outage must not turn a committed upload into an error.

`install(factory)` adds the hooks to a session factory; `service.db.make_session_factory`
does it for every factory the service makes. Effects belong to the outermost transaction:
registering one inside a savepoint (`begin_nested`) is refused, as its rollback could not
take the effect back.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

log = structlog.get_logger("reunite.effects")

Effect = Callable[[], object]
_QUEUE = "reunite.effects.queue"
_INSTALLED = "reunite.effects.installed"


def install(factory: sessionmaker[Session]) -> None:
    """Run every session's registered effects after it commits; drop them when it does not."""
    factory.configure(info={**factory.kw.get("info", {}), _INSTALLED: True})
    event.listen(factory, "after_commit", _run_effects)
    event.listen(factory, "after_transaction_end", _drop_effects)


def after_commit(session: Session, effect: Effect) -> None:
    """Run `effect()` once the session's current transaction has committed, and never otherwise."""
    if not session.info.get(_INSTALLED):
        raise RuntimeError("this session's factory has no after-commit hooks: make it with make_session_factory")
    if session.in_nested_transaction():
        raise RuntimeError("after-commit effects belong to the outermost transaction, not a savepoint")
    session.info.setdefault(_QUEUE, []).append(effect)


def _run_effects(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: the outer transaction has not committed yet
    for effect in session.info.pop(_QUEUE, []):
        try:
            effect()
        except Exception as error:  # committed all the same; see the module docstring for the recovery
            log.warning(
                "after_commit_effect_failed", effect=_name(effect), ids=_ids(effect), error=type(error).__name__
            )


def _drop_effects(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended (after a commit has run the queue, or a rollback or close)."""
    if transaction.parent is None:
        session.info.pop(_QUEUE, None)


def _ids(effect: Effect) -> list[int]:
    """The row ids the effect was given (ints only: nothing else of its arguments is logged)."""
    arguments = effect.args if isinstance(effect, partial) else ()
    return [argument for argument in arguments if isinstance(argument, int) and not isinstance(argument, bool)]


def _name(effect: Effect) -> str:
    """What failed, by name only: an effect's arguments are not the log's business."""
    target = effect.func if isinstance(effect, partial) else effect
    return getattr(target, "__qualname__", type(target).__name__)
