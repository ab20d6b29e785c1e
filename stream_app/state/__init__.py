"""The state layer: every Redis key and field format, every command and Lua script the processor
uses, behind :class:`~stream_app.state.store.StateStore`."""
