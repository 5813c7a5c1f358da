"""Listeners: user code that observes bus events by topic pattern and may act on them."""

from skyweave.listeners.base import Listener, ListenerContext, listener, load_listener
from skyweave.listeners.host import ListenerHost

__all__ = ["Listener", "ListenerContext", "ListenerHost", "listener", "load_listener"]
