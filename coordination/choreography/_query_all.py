"""QueryAll (stateless choreography): nobody holds the workflow's state; ask everyone.

Events carry ids only (the first carries the request). Each service keeps its own record of
each workflow: the states of its steps, its replies, and the request if it took it. A service
asks the one that took the request for it, and the services of the steps it `reads` for their
replies, all in parallel (in a task of its own, so that other workflows' events go on
meanwhile); `status` asks every participant and merges their records; `result` gathers the
replies once the end is announced. Small events, more messages.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from actors import ActorSystem, Link
from brokers import (
    BusConnectionError,
    BusTimeoutError,
    Msg,
    NoRespondersError,
    Subscription,
    new_id,
)

from .._clock import Clock
from .._outcomes import DEFAULT_KEEP
from .._remote import owner_of
from .._status import Outcome, WorkflowResult, WorkflowStatus
from ..core import Listing, Progress
from ..definition._workflow import Compute, Failure, Step, Workflow, WorkflowContext
from ._adapter import Adapter
from ._engine import Choreography
from ._events import EVENT_RETRY, Carried, Ended, RecordQuery, RecordReply
from ._gather import gather

__all__ = ("QueryAll",)

In = TypeVar("In", bound=msgspec.Struct)

STARTED, DONE, FAILED, COMPENSATED = "started", "done", "failed", "compensated"

GATHER_QUIET = 0.05
"""With remote sidecars, a status gathers the records of every copy of each service: it
stops waiting once none has answered for this long."""

_encode = msgspec.msgpack.Encoder().encode
_reply_decoder = msgspec.msgpack.Decoder(RecordReply)
_query_decoder = msgspec.msgpack.Decoder(RecordQuery)


@dataclass(slots=True)
class _Record:
    """One service's own part of one workflow."""

    states: dict[str, str] = field(default_factory=dict)
    results: dict[str, msgspec.Raw] = field(default_factory=dict)
    input: msgspec.Raw | None = None
    failure: Failure | None = None
    outcome: str | None = None
    attention: list[str] = field(default_factory=list)

    def holds(self, query: RecordQuery) -> bool:
        """Whether this record has something `query` asks for (anything, if it names
        nothing)."""
        if query.want_input and self.input is not None:
            return True
        if query.wanted:
            return any(name in self.results for name in query.wanted)
        return not query.want_input

    def reply(self) -> RecordReply:
        failure = self.failure
        return RecordReply(
            True,
            self.states,
            self.results,
            [] if self.input is None else [self.input],
            failure.step if failure else None,
            failure.reason if failure else None,
            failure.technical if failure else False,
            self.outcome,
            self.attention,
        )


class QueryAll(Choreography[In]):
    """Runs a workflow by stateless choreography; `status` is a scatter-gather.

    Each service remembers its part of the latest `remember` workflows.
    """

    strategy = "query_all"
    _carries_data = False

    def __init__(
        self,
        system: ActorSystem,
        workflow: Workflow[In],
        *,
        remember: int = 100_000,
        query_timeout: float = 5.0,
        keep_finished: int = DEFAULT_KEEP,
        sidecars: bool = True,
        stuck_after: float = 60.0,
        acknowledged: bool | None = None,
        remote_sidecars: bool = False,
        durable_events: bool = False,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            system,
            workflow,
            keep_finished=keep_finished,
            sidecars=sidecars,
            stuck_after=stuck_after,
            acknowledged=acknowledged,
            remote_sidecars=remote_sidecars,
            durable_events=durable_events,
            clock=clock,
        )
        self.remember = remember
        self.query_timeout = query_timeout
        self._options.update(remember=remember, query_timeout=query_timeout)
        self._records: dict[str, OrderedDict[str, _Record]] = {}
        self._subscriptions: list[Subscription] = []
        self._done_here: OrderedDict[str, dict[str, str]] = OrderedDict()
        """What the starter did of its instances that belongs to no service (a wait, a
        sleep, a compute it ran, a for-each or a sub-workflow it drove), for `status`."""
        self._listings: OrderedDict[str, tuple[Listing, ...]] = OrderedDict()
        """The for-eaches each finished instance of this process's went through."""
        self._inputs: dict[str, msgspec.Raw] = {}
        """With remote sidecars: the request of each running instance this process started,
        for the adapters elsewhere (the copy of the service that took it may be gone)."""

    def _records_subject(self, service: str, node: str | None) -> str:
        """Where `service`'s records are asked for: in the process `node`, which started the
        instances its adapters carry; or, with remote sidecars (`node` None), in every
        process that hosts the service, each holding the records of the steps it ran."""
        subject = f"{self.system.prefix}.{self._adapter_name(service)}.records"
        return subject if node is None else f"{subject}.@{node}"

    async def _open(self) -> None:
        hosted = self.remote_sidecars
        node = None if hosted else self.system.node
        for service in self._local_adapters if hosted else self._adapters:
            records: OrderedDict[str, _Record] = OrderedDict()
            self._records[service] = records
            subscription = await self.system.bus.subscribe(
                self._records_subject(service, node), self._answerer(records, silent=hosted)
            )
            self._subscriptions.append(subscription)

        if self._starter_keeps_request:
            self._subscriptions.append(
                await self.system.bus.subscribe(
                    self._input_subject(self.system.node), self._input_answerer
                )
            )

    def _input_subject(self, node: str) -> str:
        return f"{self.system.prefix}.{self._route}.input.@{node}"

    async def _input_answerer(self, msg: Msg) -> None:
        if msg.reply is None:
            return
        try:
            query = _query_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        raw = self._inputs.get(query.workflow_id)
        signals = self._signals.get(query.workflow_id, {})
        reply = (
            RecordReply(found=False)
            if raw is None
            else RecordReply(True, request=[raw], results=dict(signals))
        )
        await self.system.bus.publish(msg.reply, _encode(reply))

    @property
    def _starter_keeps_request(self) -> bool:
        """Whether the process that starts an instance keeps its request for the steps to
        ask for: with remote sidecars (the first service may run anywhere), when the flow
        begins with a branch (which service gets the first step depends on it), or when the
        starter may have the instance in hand later (a wait, a sleep, a parallel, a for-each,
        a sub-workflow: it may end the instance, and a signal's payload or a child's result
        belong to no service)."""
        workflow = self.workflow
        in_hand = (
            workflow.waits
            or workflow.sleeps
            or workflow.parallels
            or workflow.for_eaches
            or workflow.subworkflows
        )
        return self.remote_sidecars or workflow.first is not workflow.steps[0] or bool(in_hand)

    async def _carry_out_here(
        self, workflow_id: str, progress: Progress, actions: Any, data: Carried | None
    ) -> None:
        await super()._carry_out_here(workflow_id, progress, actions, data)
        workflow = self.workflow
        mine = [name for name in progress.completed if name not in workflow.by_name]
        if mine:  # not a service's step: no service's record says it is done
            done = self._done_here.get(workflow_id)
            if done is None:
                done = self._done_here[workflow_id] = {}
                if len(self._done_here) > self.outcomes.keep:
                    self._done_here.popitem(last=False)
            done.update(dict.fromkeys(mine, DONE))

    async def _begin(self, workflow_id: str, data: Carried) -> None:
        if self._starter_keeps_request:
            self._inputs[workflow_id] = data.input
        await super()._begin(workflow_id, data)

    def _finish(self, event: Ended) -> None:
        self._inputs.pop(event.workflow_id, None)
        listings = event.progress.listings
        if listings:  # for `result`, which puts each for-each's reply together
            self._listings[event.workflow_id] = listings
            if len(self._listings) > self.outcomes.keep:
                self._listings.popitem(last=False)
        super()._finish(event)

    def _result_of(self, event: Ended) -> WorkflowResult:
        """The end, with the payloads of the signals it had (its steps' replies are with the
        services, gathered by `result`)."""
        result = super()._result_of(event)
        signals = self._signals.get(event.workflow_id)
        if not signals:
            return result
        return msgspec.structs.replace(result, results=self._codec.results(signals))

    async def _data_here(self, workflow_id: str, data: Carried | None) -> Carried:
        raw = self._inputs.get(workflow_id)
        if raw is None:
            raise LookupError(f"{workflow_id}: the request is not kept here")
        return Carried(raw, {})

    async def _from_starter(self, workflow_id: str) -> RecordReply | None:
        """The request of `workflow_id`, and the payloads of its signals, from the process
        that started it."""
        owner = owner_of(workflow_id)
        if owner is None:
            return None
        query = _encode(RecordQuery(workflow_id, want_input=True))
        subject = self._input_subject(owner)
        try:
            msg = await self.system.bus.request(subject, query, self.query_timeout)
        except (BusTimeoutError, NoRespondersError, BusConnectionError):
            return None
        return _reply_decoder.decode(msg.data)

    async def _close(self) -> None:
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions.clear()

    def _answerer(self, records: OrderedDict[str, _Record], *, silent: bool) -> Any:
        """Answer queries from `records`; `silent`: a query for some replies (or the input)
        only with a record that has some (other copies of the service may have them). A
        query for everything is always answered, so that its asker hears every copy."""
        bus = self.system.bus

        async def answer(msg: Msg) -> None:
            if msg.reply is None:
                return
            try:
                query = _query_decoder.decode(msg.data)
            except msgspec.DecodeError:
                return  # not a query: nothing to answer
            record = records.get(query.workflow_id)
            asks_some = query.wanted or query.want_input
            if silent and asks_some and (record is None or not record.holds(query)):
                return  # another copy of the service may have it: it answers
            reply = record.reply() if record is not None else RecordReply(found=False)
            await bus.publish(msg.reply, _encode(reply))

        return answer

    # -- each service's own record ------------------------------------------------------

    def _record(self, adapter: Adapter[In], workflow_id: str) -> _Record:
        records = self._records[adapter.service]
        record = records.get(workflow_id)
        if record is None:
            record = records[workflow_id] = _Record()
            if len(records) > self.remember:
                records.popitem(last=False)
        return record

    async def _step_started(
        self,
        adapter: Adapter[In],
        workflow_id: str,
        step: int,
        data: Carried | None,
        progress: Progress | None = None,
        name: str = "",
    ) -> None:
        record = self._record(adapter, workflow_id)
        if data is not None and step == 0:  # the request (and a hybrid's replies) come first
            record.input = data.input
            record.results.update(data.results)
        record.states[name or self.workflow.steps[step].name] = STARTED

    def _step_done(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None, reply: bytes
    ) -> Carried | None:
        record = self._record(adapter, workflow_id)
        record.states[name] = DONE
        if self.workflow.step_of(name).wait:
            record.results[name] = msgspec.Raw(reply)
        return None

    def _step_failed(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None
    ) -> Carried | None:
        self._record(adapter, workflow_id).states[name] = FAILED
        return None

    def _step_compensated(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None
    ) -> Carried | None:
        self._record(adapter, workflow_id).states[name] = COMPENSATED
        return None

    async def _end(self, adapter: Adapter[In], event: Ended) -> None:
        record = self._record(adapter, event.workflow_id)
        progress = event.progress
        record.outcome = progress.outcome.value
        record.attention = list(progress.attention)
        record.failure = progress.failure
        await super()._end(adapter, event)

    # -- asking around ------------------------------------------------------------------

    async def _gather(
        self,
        asker: str,
        services: list[str],
        workflow_id: str,
        *,
        persist: bool = False,
        wanted: list[str] | None = None,
        want_input: bool = False,
    ) -> list[RecordReply]:
        """The records of `workflow_id` among `services`, asked in parallel; with `persist`,
        a participant that does not answer (a connection cut, a server restart) is asked
        again per `EVENT_RETRY` before this gives up.

        With remote sidecars, a service may run in several processes, each holding the
        records of the steps it ran: a query for `wanted` replies (or the input) takes the
        first copy that has some; one for everything gathers every copy's record."""
        query = _encode(RecordQuery(workflow_id, wanted or [], want_input))
        links = self.system.links
        if links is not None:
            for service in services:
                link = Link(asker, self._adapter_name(service), "RecordQuery", request=True)
                links.record(link, workflow_id)
        if self.remote_sidecars and not (wanted or want_input):
            everyone = await asyncio.gather(*(self._everyone(s, query) for s in services))
            return [reply for replies in everyone for reply in replies]
        node = None if self.remote_sidecars else owner_of(workflow_id) or self.system.node
        # A copy asked for some replies stays silent without them: silence is "not found".
        silence_ok = self.remote_sidecars and not persist
        if len(services) == 1:  # the common case: no task for a gather of one
            replies = [await self._ask(services[0], node, query, persist, silence_ok)]
        else:
            replies = await asyncio.gather(
                *(self._ask(service, node, query, persist, silence_ok) for service in services)
            )
        return [
            _reply_decoder.decode(reply.data) if reply is not None else RecordReply(found=False)
            for reply in replies
        ]

    async def _ask(
        self, service: str, node: str | None, query: bytes, persist: bool, silence_ok: bool
    ) -> Msg | None:
        subject = self._records_subject(service, node)
        attempt = 1
        while True:
            try:
                return await self.system.bus.request(subject, query, self.query_timeout)
            except (BusTimeoutError, NoRespondersError, BusConnectionError):
                if silence_ok:
                    return None
                if not persist or attempt >= EVENT_RETRY.attempts:
                    raise
            await asyncio.sleep(EVENT_RETRY.delay(attempt))
            attempt += 1

    async def _everyone(
        self, service: str, query: bytes, expected: frozenset[str] = frozenset()
    ) -> list[RecordReply]:
        """Every record the copies of `service` hold: each copy answers, and the replies are
        taken until none has come for `GATHER_QUIET` seconds (or `query_timeout` passed), or,
        when the replies of the `expected` steps are all the asker needs, once they came."""
        subject = self._records_subject(service, None)
        replies: list[RecordReply] = []
        came: set[str] = set()

        def take(msg: Msg) -> bool:
            try:
                reply = _reply_decoder.decode(msg.data)
            except msgspec.DecodeError:
                return False
            replies.append(reply)
            came.update(reply.results)
            return True

        await gather(
            self.system.bus,
            subject,
            query,
            f"{subject}.inbox.{new_id()}",
            timeout=self.query_timeout,
            quiet=GATHER_QUIET,
            accept=take,
            enough=(lambda: expected <= came) if expected else None,
        )
        return replies

    async def _replies(self, workflow_id: str) -> list[RecordReply]:
        """With remote sidecars: the records that hold the replies of an instance that ended
        here, each service asked for the replies of its steps that completed (and taken as
        soon as they came); for one that ended elsewhere, every copy's whole record."""
        final = self.outcomes.final_status(workflow_id)
        if final is None or final.completed_steps is None:
            return await self._gather("client", list(self._adapters), workflow_id, persist=True)
        done = set(final.completed_steps)
        expected: dict[str, set[str]] = {}
        for name in done:
            try:
                step = self.workflow.step_of(name)  # a for-each's item: the step it runs
            except KeyError:
                continue  # no service's: a compute, a wait...
            if step.wait:
                expected.setdefault(step.service, set()).add(name)
        query = _encode(RecordQuery(workflow_id, sorted(done)))
        everyone = await asyncio.gather(
            *(self._everyone(s, query, frozenset(names)) for s, names in expected.items())
        )
        return [reply for replies in everyone for reply in replies]

    async def _fetch(
        self, adapter: Adapter[In], workflow_id: str, step: int, *, undo: bool, item: int = -1
    ) -> Carried:
        """The request, from the service that took it, and the replies the step reads, from
        the services that gave them: asked in parallel."""
        definition = self.workflow.steps[step]
        reads = definition.undo_reads if undo else definition.reads
        if item >= 0 and undo and definition.wait:  # a for-each's item reads its own reply
            reads = (*definition.reads, adapter._item_name(step, item))
        return await self._fetch_reads(adapter, workflow_id, reads)

    async def _context_for(
        self,
        adapter: Adapter[In] | None,
        workflow_id: str,
        name: str,
        reads: tuple[str, ...],
        data: Carried | None,
    ) -> WorkflowContext[In]:
        """What a branch or a compute reads, fetched from the services that hold it (the
        starter, at the beginning of the flow, has the request at hand)."""
        if adapter is None and data is not None:
            return await super()._context_for(adapter, workflow_id, name, reads, data)
        fetched = await self._fetch_reads(adapter, workflow_id, reads)
        return self._codec.context(workflow_id, fetched.input, fetched.results, reads, name)

    def _computed(
        self,
        adapter: Adapter[In] | None,
        workflow_id: str,
        compute: Compute,
        data: Carried | None,
        reply: bytes,
    ) -> Carried | None:
        """A compute's reply belongs to no service: it is worked out again where a later
        step reads it (`_fetch_reads`). Whoever ran it keeps it, for `result`: the adapter in
        its service's record (which says it is done, for status), the starter with the
        instance's signals."""
        if adapter is not None:
            record = self._record(adapter, workflow_id)
            record.states[compute.name] = DONE
            record.results[compute.name] = msgspec.Raw(reply)
        else:
            self._signals.setdefault(workflow_id, {})[compute.name] = msgspec.Raw(reply)
        return data

    async def _fetch_reads(
        self, adapter: Adapter[In] | None, workflow_id: str, reads: tuple[str, ...]
    ) -> Carried:
        """The request, and the replies named in `reads`, from the services that hold them;
        a compute's reply is worked out again from what it reads."""
        computes = self.workflow.computes
        lists = [name for name in reads if name in self.workflow.for_eaches]
        if lists:
            return await self._fetch_lists(adapter, workflow_id, reads, lists)
        if not any(name in computes for name in reads):
            return await self._fetch_replies(adapter, workflow_id, reads)
        order = _computes_first(reads, computes)
        needed = {r for c in order for r in computes[c].reads if r not in computes}
        needed |= {r for r in reads if r not in computes}
        fetched = await self._fetch_replies(adapter, workflow_id, tuple(sorted(needed)))
        results = dict(fetched.results)
        for name in order:
            compute = computes[name]
            context = self._codec.context(
                workflow_id, fetched.input, results, compute.reads, compute.name
            )
            results[name] = msgspec.Raw(_encode(compute.fn(context)))
        return Carried(fetched.input, {name: results[name] for name in reads if name in results})

    async def _fetch_lists(
        self,
        adapter: Adapter[In] | None,
        workflow_id: str,
        reads: tuple[str, ...],
        lists: list[str],
    ) -> Carried:
        """What `reads` names, where `lists` are for-eaches: each one's items are worked out
        again (from what its `over` reads) and their replies fetched, then put in a list."""
        for_eaches = self.workflow.for_eaches
        builders = tuple(dict.fromkeys(r for name in lists for r in for_eaches[name].reads))
        source = await self._fetch_reads(adapter, workflow_id, builders)
        counts: dict[str, int] = {}
        for name in lists:
            for_each = for_eaches[name]
            context = self._codec.context(
                workflow_id, source.input, source.results, for_each.reads, name
            )
            counts[name] = len(for_each.items(context))
        items = [f"{name}[{index}]" for name in lists for index in range(counts[name])]
        rest = [name for name in reads if name not in counts]
        fetched = await self._fetch_reads(adapter, workflow_id, (*rest, *items))
        found = fetched.results
        results = {name: found[name] for name in rest if name in found}
        for name in lists:
            replies = [found.get(f"{name}[{index}]") for index in range(counts[name])]
            results[name] = msgspec.Raw(_encode(replies))
        return Carried(fetched.input, results)

    async def _fetch_replies(
        self, adapter: Adapter[In] | None, workflow_id: str, reads: tuple[str, ...]
    ) -> Carried:
        """The request, and the replies named in `reads`, from the services that hold them
        (asked by `adapter`, or, for None, by the process that started the instance, which
        holds no reply of its own)."""
        everything = (*self.workflow.done_elsewhere, *self.workflow.steps)
        services = {s.name: s.service for s in everything if isinstance(s, Step)}
        for name in reads:  # a for-each's item: its step's service holds its reply
            if name not in services and self.workflow.item(name) is not None:
                services[name] = self.workflow.step_of(name).service
        # the first service took the request (and a hybrid's replies, which came with it),
        # unless the starter keeps it
        first = [] if self._starter_keeps_request else [self.workflow.steps[0].service]
        wanted = dict.fromkeys([*first, *(services[r] for r in reads if r in services)])
        mine = self._record(adapter, workflow_id) if adapter is not None else _Record()
        others = [service for service in wanted if adapter is None or service != adapter.service]
        raw_input = mine.input
        signalled: dict[str, msgspec.Raw] = {}
        waits = [name for name in reads if name in self.workflow.waits]
        if self._starter_keeps_request and (raw_input is None or waits):
            starters = await self._from_starter(workflow_id)  # signals belong to no service
            if starters is not None:
                if raw_input is None and starters.request:
                    raw_input = starters.request[0]
                signalled = starters.results
        if self.remote_sidecars:  # the service's other copies may hold what this one lacks
            missing = [name for name in reads if name not in mine.results and name in services]
            others = list(dict.fromkeys(services[name] for name in missing))
            if raw_input is None and self.workflow.steps[0].service not in others:
                others.append(self.workflow.steps[0].service)
        # With remote sidecars, a reply is asked once, not again and again: the copy that
        # holds it may have died with it, and then the builder goes on without it (and fails
        # saying so, if it reads it). The request is asked until found: it is needed.
        records = (
            await self._gather(
                adapter._adapter_name if adapter is not None else "client",
                others,
                workflow_id,
                persist=not self.remote_sidecars or raw_input is None,
                wanted=list(reads) if self.remote_sidecars else None,
                want_input=self.remote_sidecars and raw_input is None,
            )
            if others
            else []
        )
        results = {name: mine.results[name] for name in reads if name in mine.results}
        results.update({name: signalled[name] for name in waits if name in signalled})
        for record in records:
            if raw_input is None and record.request:
                raw_input = record.request[0]
            results.update({name: record.results[name] for name in reads if name in record.results})
        if raw_input is None:
            raise LookupError(f"{workflow_id}: no participant holds the request any more")
        return Carried(raw_input, results)

    async def result(self, workflow_id: str, timeout: float | None = None) -> WorkflowResult:
        """Wait for the end, then gather the replies from the participants."""
        ended = await super().result(workflow_id, timeout)
        if self.remote_sidecars:
            records = await self._replies(workflow_id)
        else:
            records = await self._gather("client", list(self._adapters), workflow_id, persist=True)
        results: dict[str, msgspec.Raw] = {}
        for record in records:
            results.update(record.results)
        replies = {**ended.results, **self._codec.results(results)}  # with the signals'
        for listing in self._listings.get(workflow_id, ()):  # a for-each's reply: its items'
            for_each = self.workflow.for_eaches[listing.name]
            if for_each.step.wait and listing.done == listing.count:
                items = range(listing.count)
                replies[listing.name] = [replies.get(for_each.item_name(i)) for i in items]
        return WorkflowResult(workflow_id, ended.outcome, replies, ended.failure, ended.attention)

    async def _status(self, workflow_id: str) -> WorkflowStatus:
        """Every participant's record, merged."""
        await self._known(workflow_id)
        records = await self._gather("client", list(self._adapters), workflow_id)
        states: dict[str, str] = dict(self._done_here.get(workflow_id, {}))
        outcome = Outcome.RUNNING
        failure: Failure | None = None
        attention: list[str] = []
        for record in records:
            states.update(record.states)
            attention += record.attention
            if record.outcome is not None:
                outcome = Outcome(record.outcome)
            if record.failed_step is not None:
                failure = Failure(record.failed_step, record.reason or "", record.technical)
        if outcome is Outcome.RUNNING and not self.outcomes.is_running(workflow_id):
            # Ended, as this process (its starter) heard; the record that says so may have
            # been lost with a copy of a service that ran elsewhere.
            ended = self.outcomes.finished_result(workflow_id)
            outcome, failure = ended.outcome, ended.failure or failure
            attention = list(ended.attention) or attention
        names = self.workflow.leaves
        completed = [n for n in names if states.get(n) in (DONE, COMPENSATED)]
        compensated = [n for n in reversed(names) if states.get(n) == COMPENSATED]
        # A failed step whose reason is not told yet (the end is not announced): say so.
        unknown = frozenset({"failure"}) if failure is None and FAILED in states.values() else None
        started = [n for n in names if states.get(n) == STARTED]
        running = outcome is Outcome.RUNNING
        current = started[-1] if started and running else None
        return WorkflowStatus(
            workflow_id,
            self.strategy,
            outcome,
            current,
            tuple(completed),
            tuple(compensated),
            failure,
            unknown or frozenset(),
            tuple(attention),
            active_steps=tuple(started) if running else (),
        )


def _computes_first(reads: tuple[str, ...], computes: Mapping[str, Compute]) -> list[str]:
    """The computes `reads` needs, each after the computes it reads."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in computes and name not in order:
            for read in computes[name].reads:
                visit(read)
            order.append(name)

    for name in reads:
        visit(name)
    return order
