"""Which module registers each of dltrain's own models and datasets, so that a run imports only
the modules it uses (their registries, in dltrain.registry, import a module on first use).

Adding a model or dataset file means adding its names here; tests/test_imports.py imports every
module and fails, naming the line to add, when this index and the registrations disagree.
"""

MODEL_MODULES: dict[str, str] = {
    "autoencoder": "dltrain.models.autoencoder",
    "cnn": "dltrain.models.cnn",
    "cnn_large": "dltrain.models.cnn",
    "gru": "dltrain.models.rnn",
    "linear": "dltrain.models.linear",
    "logistic": "dltrain.models.linear",
    "lstm": "dltrain.models.rnn",
    "mlp": "dltrain.models.mlp",
    "rnn": "dltrain.models.rnn",
    "text_rnn": "dltrain.models.text_rnn",
    "tv_model": "dltrain.models.tv_model",
}

DATASET_MODULES: dict[str, str] = {
    "ag_news": "dltrain.data.text",
    "bank_marketing": "dltrain.data.bank",
    "blobs": "dltrain.data.synthetic",
    "breast_cancer": "dltrain.data.bundled",
    "cifar10": "dltrain.data.vision",
    "csv": "dltrain.data.tabular",
    "diabetes": "dltrain.data.bundled",
    "digits": "dltrain.data.bundled",
    "fashion_mnist": "dltrain.data.vision",
    "hf": "dltrain.data.hf",
    "image_folder": "dltrain.data.image_folder",
    "imdb": "dltrain.data.text",
    "iris": "dltrain.data.bundled",
    "line": "dltrain.data.synthetic",
    "mnist": "dltrain.data.vision",
    "mnist_seq": "dltrain.data.sequences",
    "noisy_binary": "dltrain.data.synthetic",
    "quadratic": "dltrain.data.synthetic",
    "sine_cosine": "dltrain.data.sequences",
    "sst2": "dltrain.data.text",
    "text_csv": "dltrain.data.text",
    "webdataset": "dltrain.data.webdataset_source",
    "wine": "dltrain.data.bundled",
}
