"""The simulator of reporters' feeds, driven by the catalogue (``stream_app.tools.simulate`` is its front).

- :mod:`~stream_app.simulation.world`: the catalogue as the simulator sees it, and the simulation's
  own province traits (zone, population, economy, coast), checked against it;
- :mod:`~stream_app.simulation.shapes`: growth tables, seasons, random episodes, holidays;
- :mod:`~stream_app.simulation.nature`, :mod:`~stream_app.simulation.society`: the value models;
- :mod:`~stream_app.simulation.history`: daily history since 2010, and files of it;
- :mod:`~stream_app.simulation.live`: live feeds with scenarios, and the Kafka edge.
"""
