"""The harmony model's host side: its training phrases, its network and its training run.

- :mod:`.data`: phrases of real music with their chords (POP909, the Bach chorales),
  as the device's :func:`~deepkeys.device.generation.harmony.phrase_features` reads them;
- :mod:`.model`: the network, one readable file;
- :mod:`.train`: training, evaluation against the baselines, int8 export and the card.

May import the device's ground floor and ``device.generation`` (the features and the
sampler are the device's own, so training sees exactly what the device computes), and
``host.data``. Nothing on the device imports this package.
"""
