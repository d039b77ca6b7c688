"""Words as people say them: numbers, times, dates and durations read from what the user said (``when``,
``numbers``) and written the way the assistant says them aloud (``times``, ``numbers``)."""
