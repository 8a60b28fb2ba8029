"""A tiny random Higgs Audio v2 checkpoint, written to a directory in the transformers format.

For tests and benchmarks: it loads through the same `from_pretrained` calls as the real checkpoint (text
tokenizer with Higgs' special tokens and chat template, audio tokenizer, language model), renders a line in
well under a second on a CPU and says nothing intelligible. Random weights from a fixed seed, except that
its audio head leans toward the end-of-stream code, so lines end after ~0.2-4 s as speech would instead of
running to max_new_tokens.
"""
from __future__ import annotations

from pathlib import Path

AUDIO_TOKENIZER_DIR = "audio_tokenizer"
NUM_CODEBOOKS = 4  # tiny: the real model has 8; the audio tokenizer's quantizer count must match
END_LEAN = 0.033  # end-of-stream logit lean; measured: 0 never ends a line, 0.05 ends most after 1-5 frames
FRAME_HOP = 960  # samples per audio frame at 24 kHz: 25 frames/s, as the real audio tokenizer

# Higgs' special tokens, in the names the processor and the chat template use.
SPECIAL_TOKENS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<|scene_desc_start|>", "<|scene_desc_end|>", "<|audio_out_bos|>", "<|AUDIO_OUT|>", "<|audio_eos|>",
    "<|reserved_special_token_6|>",
]

# The chat template Higgs Audio v2's transformers-format checkpoint ships (as in transformers' own
# processor tests): system, optional scene (text and reference audio), then user/assistant turns.
CHAT_TEMPLATE = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- if messages[0]['content'] is string %}
        {%- set system_message = messages[0]['content']|trim %}
    {%- elif messages[0]['content'] is iterable and messages[0]['content'][0]['type'] == 'text' %}
        {%- set system_message = messages[0]['content'][0]['text']|trim %}
    {%- else %}
        {{- raise_exception("System message content must be a string or contain text type!") }}
    {%- endif %}
    {%- set messages = messages[1:] %}
{%- else %}
    {{- raise_exception("A system message is required but not provided!") }}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- system_message }}
{%- if messages and messages[0]['role'] == 'scene' %}
    {{- "\\n\\n<|scene_desc_start|>\\n" }}
    {%- if messages[0]['content'] is string %}
        {{- messages[0]['content'] | trim }}
    {%- elif messages[0]['content'] is iterable %}
        {%- for content_item in messages[0]['content'] %}
            {%- if content_item['type'] == 'text' %}
                {%- set text_content = content_item['text'] | trim %}
                {{- text_content }}
                {%- if loop.first and not loop.last %}
                    {{- "\\n\\n" }}
                {%- endif %}
                {%- if not loop.first and not loop.last and messages[0]['content'][loop.index]['type'] != 'audio' %}
                    {{- "\\n" }}
                {%- endif %}
            {%- elif content_item['type'] == 'audio' %}
                {{- ' <|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>' }}
                {%- if not loop.last %}
                    {{- "\\n" }}
                {%- endif %}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- "\\n<|scene_desc_end|>" }}
    {%- set messages = messages[1:] %}
{%- endif %}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {%- if message['role'] == 'assistant' %}
        {%- if message['content'] is not iterable or message['content'][0]['type'] != 'audio' %}
            {{- raise_exception("Assistant messages must contain audio content only!") }}
        {%- endif %}
        {{- '<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>' }}
    {%- else %}
        {%- if message['content'] is string %}
            {{- message['content'] | trim }}
        {%- elif message['content'] is iterable %}
            {%- for content_item in message['content'] %}
                {%- if content_item['type'] == 'text' %}
                    {{- content_item['text'] | trim }}
                {%- elif content_item['type'] == 'audio' and message['role'] == 'user' %}
                    {{- raise_exception("User messages cannot contain audio content!") }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
    {%- endif %}
    {{- '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n<|audio_out_bos|>' }}
{%- endif %}
"""


def _text_tokenizer():
    """A byte-level tokenizer (256 byte symbols, no merges) plus Higgs' special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>", pad_token="<|end_of_text|>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# Audio tokenizer shapes: tiny for tests; "full" mirrors the real one (DAC + HuBERT-base, 25 frames/s, 8 codebooks).
AUDIO_TOKENIZER_SHAPES = {
    "tiny": dict(acoustic={"encoder_hidden_size": 4, "decoder_hidden_size": 64, "hidden_size": 16},
                 semantic={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                           "conv_dim": [8] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2},
                 codebook_dim=8),
    "full": dict(acoustic={"encoder_hidden_size": 64, "decoder_hidden_size": 1024, "hidden_size": 256},
                 semantic={}, codebook_dim=64),
}
# Language model shapes: tiny (2 layers, hidden 32) and the real 3B backbone's (the config's defaults).
MODEL_SHAPES = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=16, max_position_embeddings=4096, num_codebooks=NUM_CODEBOOKS),
    "full": dict(num_codebooks=8),
}


def _audio_tokenizer(size: str, num_codebooks: int):
    from transformers import HiggsAudioV2TokenizerConfig, HiggsAudioV2TokenizerModel

    shape = AUDIO_TOKENIZER_SHAPES[size]
    ratios = [8, 5, 4, 2, 3]  # FRAME_HOP samples per frame
    config = HiggsAudioV2TokenizerConfig(
        target_bandwidths=[num_codebooks * 0.25],  # 25 frames/s x 10-bit codes = 0.25 kbps per quantizer
        sample_rate=24_000, codebook_size=1024, codebook_dim=shape["codebook_dim"],
        acoustic_model_config={**shape["acoustic"], "downsampling_ratios": ratios, "upsampling_ratios": ratios},
        semantic_model_config=shape["semantic"], semantic_sample_rate=16_000, downsample_factor=320)
    return HiggsAudioV2TokenizerModel(config).eval()


def _lean_toward_end_of_stream(model, lean: float) -> None:
    """Hold hidden dimension 0 constant and positive through every layer, and weight the end-of-stream code
    of each codebook by it: a bias the bias-free audio head otherwise cannot have."""
    import torch

    config = model.config
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.model.embed_audio_tokens.embed_audio_tokens.weight[:, 0] = 0.25
        for layer in model.model.layers:
            for projection in (layer.self_attn.o_proj, layer.mlp.down_proj, layer.audio_mlp.down_proj):
                projection.weight[0] = 0.0
        ends = [k * config.codebook_size + config.audio_stream_eos_id for k in range(config.num_codebooks)]
        model.audio_lm_head.weight[ends, 0] = lean


def build_random_higgs(size: str = "tiny", seed: int = 0, end_lean: float = END_LEAN, device: str = "cpu",
                       dtype: str = "float32"):
    """A random Higgs model and its processor in memory. A negative `end_lean` (e.g. -1) makes every line run
    to max_new_tokens: a fixed frame count, for benchmarks."""
    import torch
    from transformers import DacFeatureExtractor, HiggsAudioV2Config, HiggsAudioV2ForConditionalGeneration, \
        HiggsAudioV2Processor

    tokenizer = _text_tokenizer()
    shape = MODEL_SHAPES[size]
    torch.manual_seed(seed)
    audio_tokenizer = _audio_tokenizer(size, shape["num_codebooks"])
    if audio_tokenizer.config.num_quantizers != shape["num_codebooks"]:
        raise RuntimeError(f"random audio tokenizer has {audio_tokenizer.config.num_quantizers} quantizers, "
                           f"the model {shape['num_codebooks']} codebooks")
    ids = tokenizer.convert_tokens_to_ids
    config = HiggsAudioV2Config(
        **shape, codebook_size=1026,  # 1024 codes + stream bos/eos
        vocab_size=max(len(tokenizer), 128_256 if size == "full" else 0),
        pad_token_id=ids("<|end_of_text|>"), bos_token_id=ids("<|begin_of_text|>"), eos_token_id=ids("<|eot_id|>"),
        audio_token_id=ids("<|AUDIO_OUT|>"), audio_bos_token_id=ids("<|audio_out_bos|>"),
        audio_delay_token_id=ids("<|reserved_special_token_6|>"))
    torch.manual_seed(seed)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = HiggsAudioV2ForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    _lean_toward_end_of_stream(model, end_lean)
    model.generation_config.ras_win_len = 7
    model.generation_config.ras_win_max_num_repeat = 2

    feature_extractor = DacFeatureExtractor(feature_size=1, hop_length=1, padding_side="right", padding_value=0.0,
                                            sampling_rate=24_000, return_attention_mask=True)
    processor = HiggsAudioV2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer,
                                      audio_tokenizer=audio_tokenizer, chat_template=CHAT_TEMPLATE)
    return model, processor


def build_tiny_checkpoint(dest: Path, seed: int = 0, end_lean: float = END_LEAN) -> Path:
    """Write a tiny random Higgs Audio v2 checkpoint (model, processor, audio tokenizer) into `dest`."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    model, processor = build_random_higgs("tiny", seed, end_lean)
    # The processor records where the audio tokenizer lives: an absolute path inside the checkpoint.
    processor.audio_tokenizer.save_pretrained(dest / AUDIO_TOKENIZER_DIR)
    processor.audio_tokenizer.name_or_path = str(dest / AUDIO_TOKENIZER_DIR)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest
