"""``pysource``: a small decoder-only transformer learning Python source, character by character.

The one workload here long enough for AdamZ's controller to act on a loss trend: 2,304
optimizer steps per run (its loss window, ``patience``, is 30 to 250 steps), on a transformer
language model, the kind of network the paper's next steps ask about.

**The corpus** is an excerpt of CPython 3.11.7's standard library source, shipped with the
package (``data/pysource-*.txt``, under the Python Software Foundation License,
``data/PYTHON-LICENSE.txt``), not read from the running interpreter's ``Lib/``: the files
differ from one Python release to the next, and a study's trials run on many workers, maybe
on several hosts with different interpreters; every one of them must train on the same text,
and a study run next year on the text of this year's. :data:`CORPUS_SOURCES` names the
modules it was cut from and :func:`build_corpus` cuts it again from a ``Lib/`` directory. Why
Python source and not an algorithmic task (modular arithmetic, say): it is real text with
structure at every scale (identifiers, indentation, nesting, docstrings in English), from a
source everyone can read, on which a language model's loss still falls after thousands of
steps (Adam at its default rate improves in every one of the 8 epochs), where the loss on a
small algorithmic task tends to fall to zero or sit on a plateau; why not another text file:
this one needs no download and its licence is the interpreter's own.

Each split is a different set of modules, so the held-out text shares no passage with the
training text (no line over 60 characters of the validation or test text is in the
training text): training on ``argparse``, ``collections``, ``dataclasses``, ``enum``,
``difflib``, ``inspect``, ``threading`` and ``shutil`` (599,040 characters), validation on
``textwrap``, ``tokenize`` and ``pprint`` (66,560), test on ``json.decoder``,
``json.encoder``, ``random`` and ``string`` (66,560). The training and validation texts are
one sequence of examples whose last tenth is held out (:func:`tail_validation_split`): at the
full size that tenth is exactly the validation modules, and with a smaller ``train_size`` it
is the contiguous tail of the first ``train_size`` examples, never pieces drawn between
training pieces.

**An example** is one disjoint 65-character piece of the text: its first 64 characters are
the input, the 64 characters one further on the targets (every position predicts the next
character from those before it, under a causal mask). The loss is the mean next-character
cross-entropy over the 64 positions (nats; ``val_loss`` is the metric to minimise). A
correct example is one whose last target, the 65th character, predicted from the 64
before it, is the argmax of the model's output (:meth:`PySource.count_correct`): the accuracy is the
full-context next-character accuracy, one prediction per example, as the training loops
count examples. A model that learned nothing predicts the 96 characters uniformly: chance is
``log(96)`` (4.56 nats) and ``1/96``.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adamz.workloads._base import (
    DataNotFoundError,
    Protocol,
    Splits,
    Workload,
    stacked_linear,
    tail_validation_split,
)

__all__ = [
    "CONTEXT",
    "CORPUS_PYTHON_VERSION",
    "CORPUS_SOURCES",
    "EVALUATION_PART",
    "VOCABULARY",
    "CharTransformer",
    "PySource",
    "build_corpus",
    "encode",
]

CONTEXT = 64
"""Characters a model reads per example; an example holds one more, the last target."""

VOCABULARY = "\n" + "".join(chr(code) for code in range(32, 127))
"""The 96 characters of the corpus, a token's id its index here: newline and printable ASCII
(the modules were chosen without tabs or other characters)."""

EVALUATION_PART = 128
"""Examples per model that :meth:`PySource.stacked_forward` evaluates at once."""

CORPUS_PYTHON_VERSION = "3.11.7"
"""The CPython release whose ``Lib/`` the corpus was cut from."""

CORPUS_SOURCES: dict[str, tuple[tuple[str, ...], int]] = {
    "train": (
        (
            "argparse.py",
            "collections/__init__.py",
            "dataclasses.py",
            "enum.py",
            "difflib.py",
            "inspect.py",
            "threading.py",
            "shutil.py",
        ),
        9216 * (CONTEXT + 1),
    ),
    "validation": (("textwrap.py", "tokenize.py", "pprint.py"), 1024 * (CONTEXT + 1)),
    "test": (
        ("json/decoder.py", "json/encoder.py", "random.py", "string.py"),
        1024 * (CONTEXT + 1),
    ),
}
"""Each split's text: the first so many characters of these ``Lib/`` modules, concatenated."""

CORPUS_SHA256 = {
    "train": "7be25b5d3bd192477ea426c2f35e9de62afcc14db20950fdaa0df98671423b13",
    "validation": "d700330fba41743e3dc9de2ac14ddf451ad266490ad4ab97fd04d86befdc94b0",
    "test": "6b84b9124c09a04b1d20358cd9f38f97062a804841d68e54e9c457982bca6653",
}
"""The shipped texts' digests: a copy changed in transit (line endings) is refused."""


def build_corpus(stdlib: Path) -> dict[str, str]:
    """Each split's text cut from the standard library directory ``stdlib`` (``Lib/``) as
    :data:`CORPUS_SOURCES` says; from CPython :data:`CORPUS_PYTHON_VERSION`'s, the shipped
    files.

    Raises:
        ValueError: the modules are too short, or hold a character outside the vocabulary.
    """
    texts = {}
    for split, (modules, length) in CORPUS_SOURCES.items():
        text = "".join((stdlib / module).read_text(encoding="utf-8") for module in modules)
        if len(text) < length:
            raise ValueError(
                f"Invalid stdlib: the {split} modules must hold at least {length} characters, "
                f"got {len(text)} in {stdlib}."
            )
        texts[split] = text[:length]
        encode(texts[split])  # checks the vocabulary
    return texts


_TOKEN_IDS = torch.full((256,), -1, dtype=torch.int64)
_TOKEN_IDS[torch.tensor([ord(character) for character in VOCABULARY])] = torch.arange(
    len(VOCABULARY)
)


def encode(text: str) -> Tensor:
    """Token ids (int64, one per character) of ``text``.

    Raises:
        ValueError: a character is not in :data:`VOCABULARY`; the message names the first.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        position = exc.start
    else:
        ids = _TOKEN_IDS[torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()]
        unknown = (ids < 0).nonzero()
        if not unknown.numel():
            return ids
        position = int(unknown[0, 0])
    raise ValueError(
        f"Invalid text: every character must be newline or printable ASCII, got "
        f"{text[position]!r} at position {position}."
    )


def pieces(text: str) -> tuple[Tensor, Tensor]:
    """``text`` cut into disjoint ``CONTEXT + 1``-character examples: inputs (the first
    ``CONTEXT`` characters of each) and targets (the last ``CONTEXT``), ``(n, CONTEXT)`` token
    ids each; a shorter remainder is left out."""
    ids = encode(text)
    count = ids.numel() // (CONTEXT + 1)
    examples = ids[: count * (CONTEXT + 1)].view(count, CONTEXT + 1)
    return examples[:, :-1].clone(), examples[:, 1:].clone()


class CharTransformer(nn.Module):
    """A decoder-only transformer over characters: token and learned position embeddings,
    ``layers`` pre-norm blocks (torch's ``TransformerEncoderLayer`` under a causal mask, so a
    position attends to itself and those before it), a final ``LayerNorm`` and a linear
    read-out to next-character logits.

    Pre-norm (GPT-2's order) because it trains stably at rates where post-norm needs a warm-up,
    and no dropout: a model this small underfits its corpus, and without dropout a population
    member trains exactly what its single run trains.

    Args:
        vocabulary_size: tokens (default: 96, :data:`VOCABULARY`).
        context: longest input (default: :data:`CONTEXT`).
        width: embedding width (default: 64).
        heads: attention heads per block (default: 4).
        layers: blocks (default: 2).
    """

    def __init__(
        self,
        vocabulary_size: int = len(VOCABULARY),
        context: int = CONTEXT,
        width: int = 64,
        heads: int = 4,
        layers: int = 2,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.token_embedding = nn.Embedding(vocabulary_size, width)
        self.position_embedding = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                heads,
                dim_feedforward=4 * width,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.readout = nn.Linear(width, vocabulary_size)

    def forward(self, tokens: Tensor) -> Tensor:
        """Next-token logits ``(batch, length, vocabulary_size)`` for token ids
        ``(batch, length)``, ``length`` at most ``context``."""
        length = tokens.shape[-1]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        hidden = self.token_embedding(tokens) + self.position_embedding.weight[:length]
        for block in self.blocks:
            hidden = block(hidden, src_mask=mask, is_causal=True)
        return self.readout(self.norm(hidden))


class PySource(Workload):
    """CPython's standard library source (an excerpt, shipped: no download) as 65-character
    examples; :class:`CharTransformer` (2 blocks, width 64, 4 heads, 117k parameters);
    next-character cross-entropy; batch 32; 8 epochs of 288 steps. Validation: the last tenth
    of the 10,240 training examples (other modules, see the module docs); test: 1,024 examples
    of yet other modules.

    Not one of the paper's experiments: its transformer, trained long enough for AdamZ's
    controller to see a trend (about two minutes on one CPU core).
    """

    name = "pysource"
    summary = "Python stdlib source, 2-block character transformer LM; bundled, 2,304 steps"
    protocol = Protocol(epochs=8, batch_size=32)
    num_classes = len(VOCABULARY)
    validation_fraction = 0.1

    def _load(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> Splits:
        train_inputs, train_targets = pieces(_read("train") + _read("validation"))
        test_inputs, test_targets = pieces(_read("test"))
        return Splits(train_inputs, train_targets, test_inputs, test_targets).first(
            train_size, test_size
        )

    def validation_indices(self, num_train: int) -> tuple[Tensor, Tensor]:
        """The contiguous last tenth: the validation modules (see the module docs)."""
        return tail_validation_split(num_train, self.validation_fraction)

    def build_model(self) -> nn.Module:
        return CharTransformer()

    has_stacked_forward = True

    def stacked_forward(
        self, params: dict[str, Tensor], inputs: Tensor, *, training: bool
    ) -> Tensor:
        """:class:`CharTransformer` for K stacked models: batched matrix products, and one call
        of torch's fused causal attention over all K models' heads.

        Evaluation's batches (a thousand examples for each of K models) go through in parts of
        :data:`EVALUATION_PART` examples: whole, their activations took about 270 MB per model.
        """
        models, batch, length = inputs.shape
        if not training and batch > EVALUATION_PART:
            return torch.cat(
                [
                    self.stacked_forward(params, part, training=False)
                    for part in inputs.split(EVALUATION_PART, dim=1)
                ],
                dim=1,
            )
        vocabulary, width = params["token_embedding.weight"].shape[1:]
        heads = 4
        # One embedding lookup for all K tables: model k's token t is row k * vocabulary + t.
        offsets = torch.arange(models, device=inputs.device).view(models, 1, 1) * vocabulary
        hidden = F.embedding(
            inputs + offsets, params["token_embedding.weight"].reshape(-1, width)
        ) + params["position_embedding.weight"][:, :length].unsqueeze(1)
        hidden = hidden.reshape(models, batch * length, width)
        block = 0
        while f"blocks.{block}.norm1.weight" in params:
            prefix = f"blocks.{block}."
            qkv = stacked_linear(
                _stacked_layer_norm(hidden, params, prefix + "norm1"),
                params[prefix + "self_attn.in_proj_weight"],
                params[prefix + "self_attn.in_proj_bias"],
            )
            query, key, value = qkv.reshape(
                models * batch, length, 3, heads, width // heads
            ).permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(query, key, value, is_causal=True)
            hidden = hidden + stacked_linear(
                attended.transpose(1, 2).reshape(models, batch * length, width),
                params[prefix + "self_attn.out_proj.weight"],
                params[prefix + "self_attn.out_proj.bias"],
            )
            expanded = F.gelu(
                stacked_linear(
                    _stacked_layer_norm(hidden, params, prefix + "norm2"),
                    params[prefix + "linear1.weight"],
                    params[prefix + "linear1.bias"],
                )
            )
            hidden = hidden + stacked_linear(
                expanded, params[prefix + "linear2.weight"], params[prefix + "linear2.bias"]
            )
            block += 1
        logits = stacked_linear(
            _stacked_layer_norm(hidden, params, "norm"),
            params["readout.weight"],
            params["readout.bias"],
        )
        return logits.reshape(models, batch, length, vocabulary)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))

    def stacked_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        per_token = F.cross_entropy(
            outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), reduction="none"
        )
        return per_token.view(outputs.shape[0], -1).mean(-1)

    def count_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Examples whose last target, the next character after the whole context, is the
        argmax of the model's logits there."""
        return (outputs[:, -1].argmax(dim=-1) == targets[:, -1]).sum()


def _stacked_layer_norm(hidden: Tensor, params: dict[str, Tensor], name: str) -> Tensor:
    """``nn.LayerNorm`` ``name`` for K stacked models: ``hidden`` ``(K, n, width)``."""
    normalized = F.layer_norm(hidden, hidden.shape[-1:])
    return torch.addcmul(
        params[name + ".bias"].unsqueeze(1), normalized, params[name + ".weight"].unsqueeze(1)
    )


def _read(split: str) -> str:
    """The shipped text of ``split``, checked against :data:`CORPUS_SHA256`.

    Raises:
        DataNotFoundError: the file is missing or is not the shipped one.
    """
    resource = files("adamz.workloads") / "data" / f"pysource-{split}.txt"
    try:
        raw = resource.read_bytes()
    except FileNotFoundError as exc:
        raise DataNotFoundError(
            f"pysource's {split} text not found at {resource}: reinstall adamz-search."
        ) from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CORPUS_SHA256[split]:
        raise DataNotFoundError(
            f"pysource's {split} text at {resource} is not the shipped one (sha256 {digest}, "
            f"expected {CORPUS_SHA256[split]}): reinstall adamz-search, or check out the file "
            "again without line-ending conversion."
        )
    return raw.decode("ascii")
