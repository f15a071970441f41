"""Choreography: no one drives the workflow. An adapter beside each service performs its
step, asks the workflow core what comes next and tells the next service; the four strategies
differ in what their events carry and in who can answer `status`."""

from ._engine import Choreography
from ._event_sourced import EventSourced
from ._front_controller import FrontController
from ._query_all import QueryAll
from ._stamp_coupled import StampCoupled

__all__ = ("Choreography", "EventSourced", "FrontController", "QueryAll", "StampCoupled")
