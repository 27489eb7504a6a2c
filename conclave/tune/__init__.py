"""``conclave tune``: LoRA fine-tuning of an embedded model on chat JSONL, brought back as a GGUF adapter.

* :mod:`conclave.tune.data`: chat JSONL -> token ids with a loss mask over the assistant turns only, rendered with
  the GGUF's own chat template and tokenized by llama.cpp (exactly what the embedded backend sends at inference);
* :mod:`conclave.tune.load`: the base weights read from the GGUF itself by transformers (Llama and Qwen2);
* :mod:`conclave.tune.train`: the LoRA training loop (peft): length bucketing, checkpoints, ``--resume``, Ctrl-C;
* :mod:`conclave.tune.adapter`: the trained LoRA written as a llama.cpp GGUF adapter;
* :mod:`conclave.tune.report`: the run folder's loss curve (HTML, inline SVG).

Every module here needs the ``tune`` extra (torch, transformers, peft, gguf); the store of tuned models, which
running one needs, is :mod:`conclave.models.tuned`.
"""
