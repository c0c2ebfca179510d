"""A tiny causal LM and tokenizer built on the spot, for tests, the demo and CPU benchmarks.

Nothing is downloaded: a byte-level BPE tokenizer is trained on a small synthetic corpus with
``tokenizers`` and wrapped as a fast tokenizer (BOS added, EOS/PAD set, a ChatML chat template);
the model is a randomly initialised small Llama. Both are saved like a Hub model directory.
"""

from __future__ import annotations

import random
from pathlib import Path

from godminer.training.data import CHATML

WORDS = [
    "the", "a", "one", "two", "three", "four", "five", "red", "blue", "green", "small", "large", "fast",
    "slow", "cat", "dog", "bird", "fish", "tree", "river", "stone", "sun", "moon", "star", "city", "road",
    "house", "book", "song", "water", "fire", "wind", "light", "dark", "warm", "cold", "old", "new", "good",
    "bad", "happy", "quick", "brown", "fox", "jumps", "over", "lazy", "answer", "question", "write", "short",
    "long", "story", "about", "because", "then", "when", "what", "which", "who", "how", "many", "add", "sum",
    "is", "are", "was", "were", "yes", "no", "true", "false", "number", "word", "list", "first", "last",
    "next",
]


def corpus(n: int = 4000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) for _ in range(n)]


def build_tokenizer(path: Path, vocab_size: int = 400) -> Path:
    """Train a byte-level BPE tokenizer and save it as a PreTrainedTokenizerFast directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=2048,
    )
    fast.chat_template = CHATML
    fast.save_pretrained(path)
    return Path(path)


def build_model(path: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random tiny Llama with the tokenizer beside it, saved as safetensors."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    build_tokenizer(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    return path
