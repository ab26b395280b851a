"""Organisations: applications, vetting decisions, expiry, their users and the denylist.

Every function takes the session first and keyword-only arguments, applies the
policy of `vetting` (the law-enforcement exclusion, the vetting state machine, role
grants), writes its audit event with `record_event` and commits in one
transaction. A refused application is the exception that still commits: its
`application_refused` event (rule and field codes only, nothing the applicant
typed) is kept so the operators can see attempts by law-enforcement bodies, even
though the request fails. Objects of another organisation are reported as not
found, never as forbidden, so their existence is not revealed.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.auth.models import LoginAttempt, User, UserStatus
from service.auth.passwords import WeakPassword, check_password, hash_password
from service.auth.service import create_user, end_sessions, normalise_email, password_words
from service.db import utcnow
from service.organisations.denylist import current_denylist
from service.organisations.models import DenylistDomain, Organisation, OrganisationDecision
from service.organisations.schemas import Application, CheckOut, DecisionOut, DenylistEntry, OrganisationOut
from service.refusal import Conflict, NotFound, Refused, TooMany
from service.reviews import webhook_address
from service.settings import Settings
from vetting import organisations as policy
from vetting.exclusion import Denylist, Refusal, check_email, check_org_type, check_website, normalise_domain
from vetting.permissions import Action, allowed
from vetting.roles import ORGANISATION_ROLES, Role

ATTESTATION_REFUSAL = Refusal(
    "attestation",
    "Every organisation must attest that it will not use Reunite for, or share access with, "
    "police, law-enforcement, border, immigration-enforcement, military or intelligence bodies.",
)
OPERATOR_ONLY_FIELDS = {"decisions", "pending_approvals", "checks"}
EXPIRY_REASON = "Vetting period ended; the organisation must be vetted again."


# `LoginAttempt.email` of an application: counted per address and overall for the application limits
# (as a success, so it never counts towards the sign-in failure limits).
APPLICATION_MARK = "(application)"


# --- applications ----------------------------------------------------------------------------


def apply(
    session: Session, *, application: Application, settings: Settings, address: str, now: datetime | None = None
) -> Organisation:
    """Create an applied organisation and its first user, an org_admin; refuse by rule.

    The answer does not tell whether the admin email has an account already (that would let
    anyone test addresses): then the organisation is still created, without a user, and its
    event says so for the operators vetting it. A weak password is refused alike in both cases.
    """
    now = now or utcnow()
    _check_application_rate(session, settings=settings, address=address, now=now)
    session.add(LoginAttempt(email=APPLICATION_MARK, address=address, succeeded=True, at=now))
    session.commit()  # counted whatever the outcome
    if found := _application_refusal(application, current_denylist(session)):
        field, refusal = found
        record_event(session, action=AuditAction.APPLICATION_REFUSED, details={"rule": refusal.rule, "field": field})
        session.commit()
        raise Refused(refusal.message, rule=refusal.rule)
    if email_in_use(session, application.admin_email):
        _check_new_password(application.admin_password, application.admin_email, application.name)
        hash_password(application.admin_password)  # the time a new account takes
    organisation = Organisation(
        name=application.name,
        org_type=application.org_type,
        country=application.country,
        registration_number=application.registration_number,
        website=application.website,
        contact_email=normalise_email(application.contact_email),
        status=policy.Status.APPLIED.value,
        attests_no_law_enforcement=True,
        purpose=application.attestation.purpose,
    )
    session.add(organisation)
    session.flush()
    admin = None
    if not email_in_use(session, application.admin_email):
        # The applicant holds every organisation role, so that under "nobody grants a
        # role they do not hold" they can hand each one on to their colleagues.
        admin = _create_member(
            session,
            organisation=organisation,
            email=application.admin_email,
            password=application.admin_password,
            roles=set(ORGANISATION_ROLES),
        )
    record_event(
        session,
        action=AuditAction.ORGANISATION_APPLIED,
        actor_id=admin.id if admin else None,
        organisation_id=organisation.id,
        target_type="organisation",
        target_id=organisation.id,
        details={"org_type": organisation.org_type}
        | ({"admin_user_id": admin.id} if admin else {"admin_email_in_use": True}),
    )
    session.commit()
    return organisation


def _check_application_rate(session: Session, *, settings: Settings, address: str, now: datetime) -> None:
    """Refuse (429) when the address, or everyone together, sent too many applications in the window."""
    since = now - timedelta(minutes=settings.application_window_minutes)
    recent = select(LoginAttempt.at).where(LoginAttempt.email == APPLICATION_MARK, LoginAttempt.at >= since)
    for limit, query, whose in (
        (settings.applications_per_address, recent.where(LoginAttempt.address == address), "from your network"),
        (settings.applications_globally, recent, "to Reunite just now"),
    ):
        times = session.scalars(query.order_by(LoginAttempt.at.desc()).limit(limit)).all()
        if len(times) >= limit:
            seconds = max(1, math.ceil((times[-1] - since).total_seconds()))
            minutes = math.ceil(seconds / 60)
            raise TooMany(
                f"Too many applications {whose}. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                retry_after=seconds,
            )


def _application_refusal(application: Application, denylist: Denylist) -> tuple[str, Refusal] | None:
    """The first failed exclusion check as (field, refusal), or None when all pass."""
    checks = (
        ("org_type", check_org_type(application.org_type)),
        ("contact_email", check_email(application.contact_email, denylist)),
        ("admin_email", check_email(application.admin_email, denylist)),
        ("website", check_website(application.website, denylist)),
        ("attestation", None if application.attestation.no_law_enforcement else ATTESTATION_REFUSAL),
    )
    return next(((field, refusal) for field, refusal in checks if refusal is not None), None)


# --- reading organisations -------------------------------------------------------------------


def list_organisations(session: Session, *, viewer: User, status: str | None = None) -> list[Organisation]:
    """Every organisation for operators (optionally by status); otherwise the viewer's own."""
    query = select(Organisation).order_by(Organisation.id)
    if not allowed(viewer.roles, Action.LIST_ORGANISATIONS):
        query = query.where(Organisation.id == viewer.organisation_id)
    if status is not None:
        query = query.where(Organisation.status == status)
    return list(session.scalars(query))


def organisation_details(session: Session, *, viewer: User, organisation_id: int) -> OrganisationOut:
    """One organisation; operators also see its decisions, pending approvals and checks."""
    organisation = _visible_organisation(session, viewer=viewer, organisation_id=organisation_id)
    details = OrganisationOut(
        **{
            name: getattr(organisation, name)
            for name in OrganisationOut.model_fields
            if name not in OPERATOR_ONLY_FIELDS
        }
    )
    if allowed(viewer.roles, Action.LIST_ORGANISATIONS):
        details.decisions = [DecisionOut.model_validate(d, from_attributes=True) for d in organisation.decisions]
        details.pending_approvals = sorted(policy.pending_approvals(organisation.decisions))
    if allowed(viewer.roles, Action.DECIDE_ORGANISATION):
        details.checks = exclusion_checks(session, organisation=organisation)
    return details


def exclusion_checks(session: Session, *, organisation: Organisation) -> list[CheckOut]:
    """Re-run the law-enforcement checks against today's denylist, which may have grown."""
    denylist = current_denylist(session)
    checks = [
        _check_result("org_type", check_org_type(organisation.org_type)),
        _check_result("contact_email", check_email(organisation.contact_email, denylist)),
        _check_result("website", check_website(organisation.website, denylist)),
        _check_result("attestation", None if organisation.attests_no_law_enforcement else ATTESTATION_REFUSAL),
    ]
    for user in _active_members(session, organisation_id=organisation.id):
        checks.append(_check_result("user_email", check_email(user.email, denylist), user_id=user.id))
    return checks


def _check_result(check: str, refusal: Refusal | None, *, user_id: int | None = None) -> CheckOut:
    if refusal is None:
        return CheckOut(check=check, user_id=user_id, passed=True)
    return CheckOut(check=check, user_id=user_id, passed=False, rule=refusal.rule, detail=refusal.message)


def _visible_organisation(session: Session, *, viewer: User, organisation_id: int, lock: bool = False) -> Organisation:
    organisation = session.get(Organisation, organisation_id, with_for_update=lock, populate_existing=lock)
    sees_all = allowed(viewer.roles, Action.LIST_ORGANISATIONS)
    if organisation is None or not (sees_all or viewer.organisation_id == organisation.id):
        raise NotFound("There is no such organisation.")
    return organisation


# --- vetting decisions and expiry -------------------------------------------------------------


def decide_organisation(
    session: Session, *, organisation_id: int, decision: str, actor: User, reason: str, period_days: int
) -> Organisation:
    """Apply a platform admin's decision (approve, reject, suspend, reinstate, revoke)."""
    # The row lock serialises two admins deciding at once, so both approvals are counted.
    organisation = _visible_organisation(session, viewer=actor, organisation_id=organisation_id, lock=True)
    # policy.TransitionRefused, when the decision is not possible, is answered 409 with its code.
    outcome = policy.decide(
        organisation.status,
        decision,
        actor_id=actor.id,
        prior_approvals=policy.pending_approvals(organisation.decisions),
    )
    _apply_outcome(
        session,
        organisation=organisation,
        outcome=outcome,
        actor_id=actor.id,
        reason=reason,
        period_days=period_days,
        now=utcnow(),
    )
    session.commit()
    return organisation


def expire_due_organisations(session: Session, *, now: datetime) -> list[int]:
    """Move approved organisations whose vetting has ended to `expired`; their ids."""
    due = session.scalars(
        select(Organisation)
        .where(Organisation.status == policy.Status.APPROVED.value, Organisation.vetting_expires_at <= now)
        .order_by(Organisation.id)
        .with_for_update()
    ).all()
    expired = []
    for organisation in due:
        if not policy.is_expired(organisation.status, organisation.vetting_expires_at, now):
            continue
        outcome = policy.decide(organisation.status, policy.Decision.EXPIRE, actor_id=None)
        _apply_outcome(
            session,
            organisation=organisation,
            outcome=outcome,
            actor_id=None,
            reason=EXPIRY_REASON,
            period_days=None,
            now=now,
        )
        expired.append(organisation.id)
    session.commit()
    return expired


def _apply_outcome(
    session: Session,
    *,
    organisation: Organisation,
    outcome: policy.Outcome,
    actor_id: int | None,
    reason: str,
    period_days: int | None,
    now: datetime,
) -> None:
    """Store the new status, its decision row and its audit event (not committed)."""
    # Appended (not just added) so the loaded history, read again after commit, includes it.
    organisation.decisions.append(
        OrganisationDecision(
            actor_id=actor_id,
            decision=outcome.decision.value,
            reason=reason,
            from_status=outcome.from_status.value,
            to_status=outcome.new_status.value,
            at=now,
        )
    )
    organisation.status = outcome.new_status.value
    if outcome.starts_vetting_period:
        assert period_days is not None  # only an approval starts one, and it always names the period
        organisation.approved_at = now
        organisation.vetting_expires_at = policy.vetting_expiry(now, period_days)
    record_event(
        session,
        action=AuditAction.ORGANISATION_DECISION,
        actor_id=actor_id,
        organisation_id=organisation.id,
        target_type="organisation",
        target_id=organisation.id,
        details={
            "decision": outcome.decision.value,
            "from_status": outcome.from_status.value,
            "to_status": outcome.new_status.value,
        },
    )


# --- an organisation's users --------------------------------------------------------------------


def list_users(session: Session, *, organisation_id: int, actor: User) -> list[User]:
    _own_organisation(session, actor=actor, organisation_id=organisation_id, lock=False)
    return list(session.scalars(select(User).where(User.organisation_id == organisation_id).order_by(User.id)))


def add_user(
    session: Session, *, organisation_id: int, actor: User, email: str, password: str, roles: Iterable[str]
) -> User:
    """Add a user to the actor's organisation with roles the actor holds themselves."""
    organisation = _own_organisation(session, actor=actor, organisation_id=organisation_id)
    granted = check_new_member(session, actor=actor, email=email, roles=roles)
    check_not_a_member(session, organisation_id=organisation.id, email=email)
    if email_in_use(session, email):
        record_event(
            session,
            action=AuditAction.USER_ADD_REFUSED,
            actor_id=actor.id,
            organisation_id=organisation.id,
            details={"reason": "email_in_use"},
        )
        session.commit()
        raise email_taken()
    user = _create_member(session, organisation=organisation, email=email, password=password, roles=granted)
    record_event(
        session,
        action=AuditAction.USER_ADDED,
        actor_id=actor.id,
        organisation_id=organisation.id,
        target_type="user",
        target_id=user.id,
        details={"user_id": user.id, "roles": sorted(role.value for role in granted)},
    )
    session.commit()
    return user


def remove_user(session: Session, *, organisation_id: int, actor: User, user_id: int) -> None:
    """Remove a user: their tokens stop working at once; the last org_admin stays."""
    organisation = _own_organisation(session, actor=actor, organisation_id=organisation_id)
    user = session.get(User, user_id)
    if user is None or user.organisation_id != organisation.id:
        raise NotFound("There is no such user in your organisation.")
    if user.status != UserStatus.ACTIVE:
        raise Conflict("This user has already been removed.")
    if Role.ORG_ADMIN in user.roles and _active_admin_count(session, organisation_id=organisation.id) <= 1:
        raise Conflict("This is the organisation's last org_admin; add another org_admin first.")
    user.status = UserStatus.REMOVED
    end_sessions(session, user=user)
    record_event(
        session,
        action=AuditAction.USER_REMOVED,
        actor_id=actor.id,
        organisation_id=organisation.id,
        target_type="user",
        target_id=user.id,
        details={"user_id": user.id, "roles": sorted(user.roles)},
    )
    session.commit()


# --- webhook --------------------------------------------------------------------------------


def set_webhook(session: Session, *, organisation_id: int, actor: User, url: str) -> str:
    """Point the organisation's confirmed-match webhook at `url`; returns a new signing secret."""
    organisation = _own_organisation(session, actor=actor, organisation_id=organisation_id)
    refusal = webhook_url_refusal(url)
    if refusal:
        raise Refused(refusal, rule="webhook_url")
    organisation.webhook_url = url
    organisation.webhook_secret = secrets.token_hex(32)
    record_event(
        session,
        action=AuditAction.WEBHOOK_SET,
        actor_id=actor.id,
        organisation_id=organisation.id,
        target_type="organisation",
        target_id=organisation.id,
    )
    session.commit()
    return organisation.webhook_secret


def remove_webhook(session: Session, *, organisation_id: int, actor: User) -> None:
    organisation = _own_organisation(session, actor=actor, organisation_id=organisation_id)
    organisation.webhook_url = organisation.webhook_secret = None
    record_event(
        session,
        action=AuditAction.WEBHOOK_REMOVED,
        actor_id=actor.id,
        organisation_id=organisation.id,
        target_type="organisation",
        target_id=organisation.id,
    )
    session.commit()


def webhook_url_refusal(url: str) -> str | None:
    """Only https to a public host: the service must not be steered at internal addresses (see
    service.reviews.webhook_address, which checks the resolved addresses again at every delivery)."""
    return webhook_address.url_refusal(url)


def _own_organisation(session: Session, *, actor: User, organisation_id: int, lock: bool = True) -> Organisation:
    # Locked for changes, so that two admins removing each other at once cannot leave no org_admin.
    organisation = session.get(Organisation, organisation_id, with_for_update=lock)
    if organisation is None or actor.organisation_id != organisation.id:
        raise NotFound("There is no such organisation.")
    return organisation


def _active_members(session: Session, *, organisation_id: int) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .where(User.organisation_id == organisation_id, User.status == UserStatus.ACTIVE)
            .order_by(User.id)
        )
    )


def _active_admin_count(session: Session, *, organisation_id: int) -> int:
    return sum(Role.ORG_ADMIN in user.roles for user in _active_members(session, organisation_id=organisation_id))


def _create_member(
    session: Session, *, organisation: Organisation, email: str, password: str, roles: Iterable[str]
) -> User:
    try:
        return create_user(session, email=email, password=password, roles=set(roles), organisation_id=organisation.id)
    except WeakPassword as weak:
        raise Refused(str(weak), rule="weak_password") from weak
    except IntegrityError as clash:  # a concurrent request took the address first
        session.rollback()
        raise email_taken() from clash


def _check_new_password(password: str, email: str, organisation_name: str) -> None:
    try:
        check_password(password, password_words(email, organisation_name))
    except WeakPassword as weak:
        raise Refused(str(weak), rule="weak_password") from weak


def check_new_member(session: Session, *, actor: User, email: str, roles: Iterable[str]) -> frozenset[Role]:
    """The checks every newcomer passes, added or invited: roles the actor may grant and an email
    address that is not a law-enforcement body's. Returns the roles to grant.

    Whether the address has an account already is left to the caller: an invitation does not
    tell (acceptance fails with the plain invalid-link answer); adding a user must (see email_taken).
    """
    granted = policy.check_grant(granter_roles=actor.roles, requested_roles=roles)  # GrantRefused: 403 or 422
    if refusal := check_email(email, current_denylist(session)):
        raise Refused(refusal.message, rule=refusal.rule)
    return granted


def check_not_a_member(session: Session, *, organisation_id: int, email: str) -> None:
    """Refuse an address that is already one of the organisation's own users: its admin sees them listed,
    so saying so tells nothing new (unlike an address of another organisation, which is never told)."""
    found = session.scalar(select(User.organisation_id).where(User.email == normalise_email(email)))
    if found is not None and found == organisation_id:
        raise Conflict("This person already has an account in your organisation.", rule="already_member")


def email_in_use(session: Session, email: str) -> bool:
    return session.scalar(select(User.id).where(User.email == normalise_email(email))) is not None


def email_taken() -> Conflict:
    """Adding a user cannot pretend to create an account it did not: this refusal stays, worded so that
    it does not say an account exists, and audited (`user_add_refused`) so operators can see probing."""
    return Conflict(
        "This email address cannot be used for a new account. Check the address with your colleague.",
        rule="email_unavailable",
    )


# --- the denylist -------------------------------------------------------------------------------


def list_denylist(session: Session) -> list[DenylistEntry]:
    """The shipped domains (read-only) followed by those platform admins added."""
    shipped = [DenylistEntry(domain=domain, source="shipped") for domain in Denylist.shipped()]
    added = session.scalars(select(DenylistDomain).order_by(DenylistDomain.domain))
    return shipped + [
        DenylistEntry(
            domain=row.domain, source="added", reason=row.reason, added_by=row.added_by, added_at=row.added_at
        )
        for row in added
    ]


def add_denylist_domain(session: Session, *, domain: str, reason: str, actor: User) -> DenylistDomain:
    """Refuse a domain (and its subdomains) from now on; end its users' sessions at once."""
    normalised = normalise_domain(domain)
    if normalised is None:
        raise Refused("This is not a valid domain name.", rule="invalid_domain")
    if "." not in normalised:
        # One label would refuse a whole top-level domain (every .org, say): only the shipped list may.
        raise Refused("Add a domain with at least two labels, such as police.example.", rule="top_level_domain")
    if current_denylist(session).refuses(normalised):
        raise Conflict("This domain is already refused by the denylist.")
    row = DenylistDomain(domain=normalised, reason=reason, added_by=actor.id, added_at=utcnow())
    session.add(row)
    session.flush()
    signed_out = _sign_out_users_of(session, denylist=Denylist([normalised]))
    record_event(
        session,
        action=AuditAction.DENYLIST_DOMAIN_ADDED,
        actor_id=actor.id,
        target_type="denylist_domain",
        target_id=row.id,
        details={"domain_id": row.id, "users_signed_out": signed_out},
    )
    session.commit()
    return row


def remove_denylist_domain(session: Session, *, domain: str, actor: User) -> None:
    """Remove a domain a platform admin added; the shipped list cannot be changed here."""
    normalised = normalise_domain(domain) or ""
    row = session.scalars(select(DenylistDomain).where(DenylistDomain.domain == normalised)).first()
    if row is None:
        if normalised and normalised in set(Denylist.shipped()):
            raise Conflict("This domain is on the shipped denylist, which cannot be changed here.")
        raise NotFound("This domain is not on the denylist.")
    record_event(
        session,
        action=AuditAction.DENYLIST_DOMAIN_REMOVED,
        actor_id=actor.id,
        target_type="denylist_domain",
        target_id=row.id,
        details={"domain_id": row.id},
    )
    session.delete(row)
    session.commit()


def _sign_out_users_of(session: Session, *, denylist: Denylist) -> int:
    """End the sessions of active users whose email the new domain refuses; how many."""
    users = session.scalars(select(User).where(User.status == UserStatus.ACTIVE)).all()
    refused = [user for user in users if denylist.refuses(user.email.rpartition("@")[2])]
    for user in refused:
        end_sessions(session, user=user)
    return len(refused)
