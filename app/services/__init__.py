"""The studio's service layer: the only part of ``app/`` that imports ``audio_thinker``.

One module per tab or job: :mod:`.compare` (Ask & compare, votes), :mod:`.rating` (Rate), :mod:`.importing`
(the Rate tab's trace import), :mod:`.reward` (Ratings & reward model), :mod:`.runs` (Runs), :mod:`.model`
(the model, its card, upload checks), :mod:`.auth` (identity, admins, private files for the API and the
HTTP guard) and :mod:`.state` (settings, the store, errors, and :data:`.state.STATE`, everything kept
between requests).

Tabs and API endpoints call these functions with plain Python values (and the annotator name that
:func:`.auth.annotator` took from the server-side request) and get plain values back; they never touch
models, tensors, SQL sessions or training internals. Every function that reads or writes ratings takes the
annotator and checks ownership itself, so no UI path can bypass it. SQL is written only in
:class:`audio_thinker.store.Store`.
"""
