"""The model zoo: one module per published model; importing this package registers them all.

Add a model: write `models/zoo/<name>.py` with a `@register_model` class and import it here.
"""
from models.zoo import mult  # noqa: F401

from models.zoo import baselines, vae_amdt  # noqa: F401,E402  (registration side effects)
from models.zoo import fdmer  # noqa: F401
from models.zoo import seq2seq  # noqa: F401,E402  Seq2Seq2Sentiment variants
from models.zoo import mctn  # noqa: F401,E402  MCTN
from models.zoo import adamml  # noqa: F401,E402  AdaMML
from models.zoo import crosslingual  # noqa: F401,E402  cross-lingual NCE model
from models.zoo import hybrid_modal  # noqa: F401
from models.zoo import multilogue  # noqa: F401,E402  Multilogue-Net (monologue)
