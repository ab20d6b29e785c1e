"""The Government Information and Direction Center's screen: a live web view of the country, served by
``stream-app screen`` in its own process (:mod:`stream_app.screen.server`)."""
