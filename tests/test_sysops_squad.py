"""The Sysops Squad ticket workflow under every strategy and under the seed's hybrid
(orchestrated core, choreographed after TicketResolved, a front controller for status), on
both buses: same business outcome, same final state of every service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from actors import ActorSystem
from brokers import Bus
from coordination import (
    EventSourced,
    FrontController,
    Hybrid,
    InvalidWorkflowError,
    ManualClock,
    Mediator,
    Outcome,
    QueryAll,
    StampCoupled,
    UnknownWorkflowError,
)
from coordination._remote import owner_of
from coordination.scenarios.sysops_squad import (
    CUSTOMER_ACCEPTS,
    TICKET_RESOLVED,
    Acceptance,
    AssignmentService,
    BillingService,
    NotificationService,
    ResolutionService,
    SubmitTicket,
    SurveyService,
    TicketService,
    ValidationService,
    accepted_ticket_workflow,
    ticket_workflow,
)

from .helpers import until
from .test_strategies import STRATEGIES, StrategyFactory

pytestmark = pytest.mark.anyio

HYBRID = "hybrid"
FACTORIES: dict[str, StrategyFactory] = {
    **STRATEGIES,
    HYBRID: lambda system, workflow: Hybrid(  # type: ignore[return-value]
        system, workflow, core=Mediator, rest=FrontController, handoff=TICKET_RESOLVED
    ),
}
STEPS = tuple(step.name for step in ticket_workflow.steps)


@pytest.fixture(params=sorted(FACTORIES))
def strategy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Squad:
    system: ActorSystem
    strategy: object
    tickets: TicketService
    assignment: AssignmentService
    billing: BillingService
    survey: SurveyService
    notifications: NotificationService
    resolution: ResolutionService

    async def run(self, ticket: SubmitTicket) -> object:
        strategy = self.strategy
        workflow_id = await strategy.start(ticket)  # type: ignore[attr-defined]
        return await strategy.result(workflow_id, timeout=10)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def open_squad(bus: Bus, strategy: str, experts: list[str]) -> AsyncIterator[Squad]:
    tickets, notifications = TicketService(), NotificationService()
    assignment, resolution = AssignmentService(experts), ResolutionService()
    billing, survey = BillingService(declined=frozenset({"broke"})), SurveyService()
    validation = ValidationService({"ann": "basic", "bob": "premium", "broke": "basic"})
    async with ActorSystem(bus) as system:
        for name, service in [
            ("ticket", tickets),
            ("validation", validation),
            ("assignment", assignment),
            ("notification", notifications),
            ("resolution", resolution),
            ("billing", billing),
            ("survey", survey),
        ]:
            await system.spawn(lambda service=service: service, name=name)
        async with FACTORIES[strategy](system, ticket_workflow) as running:
            yield Squad(
                system,
                running,
                tickets,
                assignment,
                billing,
                survey,
                notifications,
                resolution,
            )


async def test_a_ticket_is_resolved_billed_surveyed_and_closed(
    bus: Bus, strategy_name: str
) -> None:
    async with open_squad(bus, strategy_name, experts=["sam"]) as squad:
        result = await squad.run(SubmitTicket("t1", "ann", "printer on fire"))
        assert result.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
        await until(lambda: squad.tickets.tickets.get("t1") == "closed")
        await until(lambda: len(squad.notifications.sent) == 2)
        status = await squad.strategy.status(result.workflow_id)  # type: ignore[attr-defined]
    assert status.completed_steps == STEPS
    assert squad.resolution.resolved == {"t1": "sam"}
    assert squad.billing.invoices == {"t1": (10 + len("printer on fire") % 50) * 200}
    assert squad.survey.sent == ["t1"]
    assert squad.notifications.sent == [("sam", "ticket t1"), ("ann", "ticket t1 resolved")]
    assert squad.assignment.free == ["sam"]  # released after resolution


async def test_a_customer_without_contract_is_refused(bus: Bus, strategy_name: str) -> None:
    async with open_squad(bus, strategy_name, experts=["sam"]) as squad:
        result = await squad.run(SubmitTicket("t2", "eve", "vpn"))
        await until(lambda: squad.tickets.tickets.get("t2") == "rejected")
        await until(lambda: len(squad.notifications.sent) == 1)
    assert result.outcome is Outcome.FAILED  # type: ignore[attr-defined]
    failure = result.failure  # type: ignore[attr-defined]
    assert (failure.step, failure.reason, failure.technical) == (
        "validate",
        "no support contract",
        False,
    )
    assert squad.assignment.history == []
    assert squad.notifications.sent == [("eve", "ticket t2 not handled: no support contract")]


async def test_no_expert_free_is_retried_then_escalated(bus: Bus, strategy_name: str) -> None:
    async with open_squad(bus, strategy_name, experts=[]) as squad:
        result = await squad.run(SubmitTicket("t3", "ann", "laptop"))
        await until(lambda: squad.tickets.tickets.get("t3") == "escalated")
        await until(lambda: len(squad.notifications.sent) == 1)
    assert result.outcome is Outcome.FAILED  # type: ignore[attr-defined]
    failure = result.failure  # type: ignore[attr-defined]
    assert failure.step == "assign"
    assert failure.technical
    assert "NoExpertFree" in failure.reason
    assert squad.notifications.sent == [("manager", "escalated: t3 waits for an expert")]
    assert squad.resolution.resolved == {}


async def test_tickets_wait_for_a_busy_expert(bus: Bus, strategy_name: str) -> None:
    """One expert, three tickets at once: assignment fails while the expert is busy, is
    retried, and every ticket is resolved by the same expert in turn."""
    async with open_squad(bus, strategy_name, experts=["sam"]) as squad:
        results = await asyncio.gather(
            *(squad.run(SubmitTicket(f"t{n}", "bob", "mouse")) for n in range(4, 7))
        )
        await until(lambda: list(squad.tickets.tickets.values()) == ["closed"] * 3)
    assert [r.outcome for r in results] == [Outcome.COMPLETED] * 3  # type: ignore[attr-defined]
    assert squad.resolution.resolved == {"t4": "sam", "t5": "sam", "t6": "sam"}
    assert squad.billing.invoices == {"t4": 0, "t5": 0, "t6": 0}  # a premium plan
    assert squad.assignment.free == ["sam"]


async def test_a_declined_bill_after_resolution(bus: Bus, strategy_name: str) -> None:
    """Under one strategy the whole workflow unwinds (the assignment is undone, a no-op once
    the expert is released); under the hybrid the hand-off is a commitment: the rest fails
    alone. The services end in the same state either way."""
    async with open_squad(bus, strategy_name, experts=["sam"]) as squad:
        result = await squad.run(SubmitTicket("t7", "broke", "disk"))
        await until(lambda: squad.tickets.tickets.get("t7") == "failed")
        await until(lambda: len(squad.notifications.sent) == 2)
    expected = Outcome.FAILED if strategy_name == HYBRID else Outcome.COMPENSATED
    assert result.outcome is expected  # type: ignore[attr-defined]
    assert result.failure.reason == "card declined"  # type: ignore[attr-defined]
    assert squad.billing.invoices == {}
    assert squad.resolution.resolved == {"t7": "sam"}
    assert squad.assignment.free == ["sam"]
    assert squad.notifications.sent == [
        ("sam", "ticket t7"),
        ("broke", "ticket t7 not handled: card declined"),
    ]


async def test_the_hybrid_reports_the_part_that_runs(bus: Bus) -> None:
    async with open_squad(bus, HYBRID, experts=["sam"]) as squad:
        hybrid = squad.strategy
        assert isinstance(hybrid, Hybrid)
        assert hybrid.strategy == "hybrid(mediator+front_controller)"
        result = await squad.run(SubmitTicket("t8", "ann", "keyboard"))
        status = await hybrid.status(result.workflow_id)  # type: ignore[attr-defined]
    assert status.strategy == hybrid.strategy
    assert status.outcome is Outcome.COMPLETED
    assert status.completed_steps == STEPS


async def test_a_hybrid_answers_for_the_instances_another_process_started(bus: Bus) -> None:
    """Two systems (processes, on NATS) run the same hybrid: each answers status, result and
    cancel of the other's instances, as the process that started them says."""
    async with (
        open_squad(bus, "mediator", experts=["sam"]),  # the services
        ActorSystem(bus) as here,
        ActorSystem(bus) as there,
        FACTORIES[HYBRID](here, ticket_workflow) as ours,
        FACTORIES[HYBRID](there, ticket_workflow) as theirs,
    ):
        theirs_id = await theirs.start(SubmitTicket("x1", "ann", "mouse"))
        result = await ours.result(theirs_id, timeout=10)
        assert result.outcome is Outcome.COMPLETED
        assert result == await theirs.result(theirs_id)
        status = await ours.status(theirs_id)
        assert (status.outcome, status.completed_steps) == (Outcome.COMPLETED, STEPS)
        assert not await ours.cancel(theirs_id)  # ended, as its own process says
        ours_id = await ours.start(SubmitTicket("x2", "broke", "mouse"))
        assert (await theirs.result(ours_id, timeout=10)).outcome is Outcome.FAILED
    stranger = theirs_id.replace(owner_of(theirs_id) or "", "0123456789abcdef")
    async with ActorSystem(bus) as alone, FACTORIES[HYBRID](alone, ticket_workflow) as hybrid:
        with pytest.raises(UnknownWorkflowError, match="does not answer"):
            await hybrid.status(stranger)


async def test_the_hybrid_remembers_the_latest_finished_instances_only(bus: Bus) -> None:
    async with (
        open_squad(bus, "mediator", experts=["sam"]) as squad,  # the services
        Hybrid(
            squad.system,
            ticket_workflow,
            core=Mediator,
            rest=FrontController,
            handoff=TICKET_RESOLVED,
            keep_finished=2,
        ) as hybrid,
    ):
        ids = []
        for number in range(4):
            ids.append(await hybrid.start(SubmitTicket(f"b{number}", "ann", "mouse")))
            await hybrid.result(ids[-1], timeout=10)
        for forgotten in ids[:2]:
            with pytest.raises(UnknownWorkflowError, match="more than 2 finished"):
                await hybrid.result(forgotten)
        for kept in ids[2:]:
            assert (await hybrid.result(kept)).outcome is Outcome.COMPLETED


def test_a_hybrid_needs_a_hand_off_inside_the_workflow() -> None:
    with pytest.raises(InvalidWorkflowError, match="hand-off"):
        Hybrid(None, ticket_workflow, core=Mediator, rest=FrontController, handoff="nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidWorkflowError, match="hand-off"):
        Hybrid(None, ticket_workflow, core=Mediator, rest=FrontController, handoff="close_ticket")  # type: ignore[arg-type]


CLOCKED = {
    "mediator": Mediator,
    "stamp_coupled": StampCoupled,
    "front_controller": FrontController,
    "query_all": QueryAll,
    "event_sourced": EventSourced,
}


async def _until_at(strategy: Any, workflow_id: str, step: str) -> None:
    with anyio.fail_after(10):
        while (await strategy.status(workflow_id)).current_step != step:  # noqa: ASYNC110
            await anyio.sleep(0.01)


@pytest.mark.parametrize("name", sorted(CLOCKED))
async def test_the_customer_accepts_the_fix_and_the_survey_waits_a_day(
    bus: Bus, clock: ManualClock, name: str
) -> None:
    """The seeds' ticket in full: the customer's acceptance is a signal (a week of silence
    counts as yes, a no unwinds the ticket), and the survey goes out a day after the bill."""
    tickets, survey, billing = TicketService(), SurveyService(), BillingService()
    assignment = AssignmentService(["sam", "kim", "lee"])
    validation = ValidationService({"ann": "basic", "bob": "basic", "cy": "basic"})
    async with ActorSystem(bus) as system:
        for service_name, service in [
            ("ticket", tickets),
            ("validation", validation),
            ("assignment", assignment),
            ("notification", NotificationService()),
            ("resolution", ResolutionService()),
            ("billing", billing),
            ("survey", survey),
        ]:
            await system.spawn(lambda service=service: service, name=service_name)
        async with CLOCKED[name](system, accepted_ticket_workflow, clock=clock) as squad:
            happy = await squad.start(SubmitTicket("t1", "ann", "printer on fire"))
            unhappy = await squad.start(SubmitTicket("t2", "bob", "screen dark"))
            silent = await squad.start(SubmitTicket("t3", "cy", "no sound"))
            for ticket in (happy, unhappy, silent):
                await _until_at(squad, ticket, "acceptance")
            await squad.signal(happy, CUSTOMER_ACCEPTS, Acceptance(accepted=True))
            await squad.signal(unhappy, CUSTOMER_ACCEPTS, Acceptance(False, "still dark"))
            refused = await squad.result(unhappy, timeout=10)
            await _until_at(squad, happy, "survey_delay")
            assert survey.sent == []  # not before a day has passed
            await clock.advance(7 * 24 * 3600)  # the silent customer's week; happy's day
            await _until_at(squad, silent, "survey_delay")
            await clock.advance(24 * 3600)
            done, deemed = [await squad.result(t, timeout=10) for t in (happy, silent)]
    assert (done.outcome, deemed.outcome) == (Outcome.COMPLETED, Outcome.COMPLETED)
    assert deemed.results["acceptance"] == Acceptance(True, "no answer within a week")
    assert sorted(survey.sent) == ["t1", "t3"]
    assert refused.outcome is Outcome.COMPENSATED
    assert refused.failure is not None
    assert (refused.failure.step, refused.failure.technical) == ("accepted", False)
    assert "still dark" in refused.failure.reason
    assert "t2" not in billing.invoices
    assert sorted(assignment.free) == ["kim", "lee", "sam"]  # every expert free again
