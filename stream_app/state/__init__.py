"""The state layer: every Redis key and field format, every command and Lua script the processor
uses, behind :class:`~stream_app.state.layer.StateLayer` — on Redis,
:class:`~stream_app.state.store.StateStore`; in memory, for unit tests,
:class:`~stream_app.state.memory.MemoryStateStore`."""
