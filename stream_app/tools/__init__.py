"""What people run: the ``stream-app`` command line, the demo, tails, dead-letter tools, the bulk
producer, the simulator and the control records (ticks, directives)."""
