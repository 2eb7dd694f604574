"""The training data of every genre: read, rendered, cached and cut into windows.

Modules, each importing only those listed before it (and ``deepkeys.device``; the
windows also ``deepkeys.host.model``, whose inputs they build), so no two import
each other:

- :mod:`~deepkeys.host.data.windows`: :class:`Windows`, what the trainer consumes.
- :mod:`~deepkeys.host.data.multitrack`: multitrack MIDI files on the 16th grid, one
  part per General MIDI role.
- :mod:`~deepkeys.host.data.chorales`: the Bach chorales of music21's corpus, their
  cache and the committed split (``host/splits/chorale.json``).
- :mod:`~deepkeys.host.data.pop909`: POP909's songs (``../shared/datasets/pop909``): the
  vocal melody, the pianist's part and the annotated chords, and the committed split.
- :mod:`~deepkeys.host.data.folk`: the folk tunes of music21's corpus that carry chord
  symbols, for the harmony model, and their committed split (``host/splits/folk.json``).
- :mod:`~deepkeys.host.data.band`: a melody over multitrack parts, cut into windows of
  the band's tracks (bass, comp, pad, drums).
- :mod:`~deepkeys.host.data.mma`: the style genres' recipe, chorale harmony rendered by
  MMA's grooves.
- :mod:`~deepkeys.host.data.folder`: a genre from a user's folder of MIDI files.
- :mod:`~deepkeys.host.data.shards`: a prepared folder on disk (a manifest and a shard of
  windows per file) and its training set, read lazily.
- :mod:`~deepkeys.host.data.prepare`: ``deepkeys prepare``: a folder into shards, one
  Dask task per file, on local processes or a cluster.
- :mod:`~deepkeys.host.data.synthetic`: generated band songs (some broken), for tests
  and the preparation benchmark.
- :mod:`~deepkeys.host.data.sources`: picks a genre's source and its generator.

Nothing here imports the rest of ``deepkeys.host``'s training or export code.
"""
