"""The VQA scorer: a frozen Qwen-VL model turns yes/no questions into differentiable losses.

For each question the loss is the paper's: the teacher-forced negative
log-likelihood of the answer "Yes" given the frames and the question, summed
over the answer's tokens. P(Yes) = exp(-loss) is reported with it; optionally
the loss is taken on P(Yes) / (P(Yes) + P(No)) instead.

The frames are one video (Qwen's video input: temporal patches of 2 frames).
Preprocessing runs in torch (:mod:`reasoner.vlm_preprocess`), so gradients reach
the pixels. All questions about one set of frames share one vision-encoder pass;
the language model then scores them in batches of ``max_queries_per_pass``
(left-padded, so every answer sits at the end and only the last few logits are
computed).

Supported: the Qwen2.5-VL and Qwen3-VL families through transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)

from reasoner.errors import ConfigError
from reasoner.vlm_preprocess import (
    VisionInput,
    VisionPreprocessConfig,
    check_frames,
    preprocess_video,
)

# mm_token_type_ids values transformers v5 expects: text 0, image 1, video 2.
_VIDEO_TOKEN_TYPE = 2


class VQAScorerConfig(BaseModel):
    """How the scorer asks its questions."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(
        2.0,
        gt=0,
        allow_inf_nan=False,
        description="Frame rate the scored frames are taken to have: sets Qwen3-VL's frame "
        "timestamps and Qwen2.5-VL's temporal positions (2.0 = the processors' default "
        "sampling rate).",
    )
    min_pixels: int | None = Field(
        None, ge=1, description="Smallest frame area after resizing; default one token per frame."
    )
    max_pixels: int | None = Field(
        None, ge=1, description="Largest frame area after resizing; default 256 tokens' worth."
    )
    max_queries_per_pass: int = Field(
        8, ge=1, description="Questions scored in one language-model forward pass (memory cap)."
    )
    answer_yes: str = Field(
        "Yes", min_length=1, description="The answer whose likelihood is the loss."
    )
    answer_no: str = Field(
        "No", min_length=1, description="The opposite answer, for normalisation."
    )
    question_suffix: str = Field(
        " Answer Yes or No.",
        description="Appended to every question so the model answers with one word.",
    )
    system_prompt: str | None = Field(
        None,
        description="System message; default the family's chat template default "
        "(Qwen2.5-VL: 'You are a helpful assistant.'; Qwen3-VL: none).",
    )


@dataclass(frozen=True)
class QueryScore:
    """The scorer's verdict on one question."""

    question: str
    nll: torch.Tensor  # scalar loss, differentiable in the frames
    p_yes: float  # exp(-nll): P(Yes), or P(Yes)/(P(Yes)+P(No)) when normalized
    p_no: float | None  # P(No) (unnormalised), when it was computed
    normalized: bool


# ------------------------------------------------------------------ prompt formats


def _frame_times(num_frames: int, first: int, temporal: int, fps: float) -> list[float]:
    """Seconds at the middle of each temporal patch (Qwen3-VL's timestamp rule)."""
    idx = list(range(first, first + num_frames))
    idx += [idx[-1]] * (-len(idx) % temporal)
    return [(idx[i] + idx[i + temporal - 1]) / 2 / fps for i in range(0, len(idx), temporal)]


def _qwen2_5_prompt(
    question: str, grid: torch.Tensor, tokens_per_group: int, times: list[float], system: str | None
) -> str:
    pads = "<|video_pad|>" * (tokens_per_group * int(grid[0]))
    system = "You are a helpful assistant." if system is None else system
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n<|vision_start|>{pads}<|vision_end|>{question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def _qwen3_prompt(
    question: str, grid: torch.Tensor, tokens_per_group: int, times: list[float], system: str | None
) -> str:
    # Qwen3-VL separates temporal patches by their timestamps; each patch is its
    # own vision span (this is how its processor expands a video).
    video = "".join(
        f"<{t:.1f} seconds><|vision_start|>{'<|video_pad|>' * tokens_per_group}<|vision_end|>"
        for t in times
    )
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system is not None else ""
    return f"{head}<|im_start|>user\n{video}{question}<|im_end|>\n<|im_start|>assistant\n"


PromptFormat = Callable[[str, torch.Tensor, int, list[float], str | None], str]
PROMPT_FORMATS: dict[str, PromptFormat] = {
    "qwen2_5_vl": _qwen2_5_prompt,
    "qwen3_vl": _qwen3_prompt,
}
_MODEL_CLASSES = {
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    "qwen3_vl": Qwen3VLForConditionalGeneration,
}


# ------------------------------------------------------------------------ scorer


class VQAScorer:
    """A frozen Qwen2.5-VL / Qwen3-VL model that scores yes/no questions about frames."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: VQAScorerConfig | None = None,
    ) -> None:
        family = model.config.model_type
        if family not in PROMPT_FORMATS:
            raise ConfigError(
                f"VQAScorer supports Qwen2.5-VL and Qwen3-VL models, got model_type={family!r}"
            )
        self.family = family
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.config = config or VQAScorerConfig()
        self.preprocess = VisionPreprocessConfig.for_model(
            model.config, min_pixels=self.config.min_pixels, max_pixels=self.config.max_pixels
        )
        self._video_token_id = model.config.video_token_id
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._yes_ids = self._answer_ids(self.config.answer_yes)
        self._no_ids = self._answer_ids(self.config.answer_no)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        config: VQAScorerConfig | None = None,
    ) -> VQAScorer:
        """Load a Qwen-VL checkpoint (hub id or local folder) and its tokenizer, frozen."""
        family = AutoConfig.from_pretrained(path_or_id).model_type
        if family not in _MODEL_CLASSES:
            raise ConfigError(
                f"{path_or_id!r} is a {family!r} model; the scorer needs Qwen2.5-VL or Qwen3-VL"
            )
        model = _MODEL_CLASSES[family].from_pretrained(path_or_id, dtype=dtype).to(device)
        return cls(model, AutoTokenizer.from_pretrained(path_or_id), config)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def _answer_ids(self, answer: str) -> list[int]:
        ids = self.tokenizer(answer, add_special_tokens=False).input_ids
        if not ids:
            raise ConfigError(f"answer {answer!r} tokenizes to nothing; use a non-empty word")
        return list(ids)

    def encode_frames(self, frames: torch.Tensor) -> tuple[VisionInput, object]:
        """Preprocess and run the vision encoder once; returns its input and output."""
        check_frames(frames)
        # Resize and normalise in float32 (bf16 would cost ~2 grey levels); the
        # encoder casts the patches to its own dtype.
        vision = preprocess_video(
            frames.to(device=self.device, dtype=torch.float32), self.preprocess
        )
        features = self.model.get_video_features(
            vision.pixel_values, vision.grid_thw, return_dict=True
        )
        return vision, features

    def score(
        self,
        frames: torch.Tensor,
        questions: Sequence[str],
        *,
        normalize_yes_no: bool = False,
        first_frame_index: int = 0,
    ) -> list[QueryScore]:
        """Score yes/no questions on one video ``(F, 3, H, W)`` in [0, 1].

        ``first_frame_index``: position of ``frames[0]`` in the full video, so a
        window's frames get their true timestamps. Gradients flow from every
        returned ``nll`` to ``frames``.
        """
        if isinstance(questions, str):
            raise ConfigError("questions must be a list of strings, not one string")
        if not questions:
            return []
        vision, features = self.encode_frames(frames)
        grid = vision.grid_thw[0]
        tokens_per_group = int(grid[1] * grid[2]) // self.preprocess.merge_size**2
        times = _frame_times(
            frames.shape[0], first_frame_index, self.preprocess.temporal_patch_size, self.config.fps
        )
        fmt = PROMPT_FORMATS[self.family]
        prompts = [
            self.tokenizer(
                fmt(
                    q + self.config.question_suffix,
                    grid,
                    tokens_per_group,
                    times,
                    self.config.system_prompt,
                ),
                add_special_tokens=False,
            ).input_ids
            for q in questions
        ]
        # One row per (question, answer). "No" needs its own rows only when an answer
        # spans several tokens; a one-token "No" is read off the "Yes" rows' logits.
        yes, no = 0, 1
        answers = {yes: self._yes_ids, no: self._no_ids}
        one_token = len(self._yes_ids) == 1 and len(self._no_ids) == 1
        rows = [(i, yes) for i in range(len(prompts))]
        if normalize_yes_no and not one_token:
            rows += [(i, no) for i in range(len(prompts))]
        logp: dict[tuple[int, int], torch.Tensor] = {}
        step = self.config.max_queries_per_pass
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            out = self._answer_logprobs(
                [prompts[i] + answers[a] for i, a in chunk],
                [answers[a] for _, a in chunk],
                grid,
                features,
            )
            for (i, a), (lp_answer, lp_no_first) in zip(chunk, out, strict=True):
                logp[(i, a)] = lp_answer
                if a == yes and one_token:
                    logp[(i, no)] = lp_no_first
        scores = []
        for i, question in enumerate(questions):
            lp_yes = logp[(i, yes)]
            lp_no = logp.get((i, no))
            if normalize_yes_no:
                assert lp_no is not None
                nll = -(lp_yes - torch.logaddexp(lp_yes, lp_no))
            else:
                nll = -lp_yes
            scores.append(
                QueryScore(
                    question=question,
                    nll=nll,
                    p_yes=float(torch.exp(-nll.detach())),
                    p_no=float(torch.exp(lp_no.detach())) if lp_no is not None else None,
                    normalized=normalize_yes_no,
                )
            )
        return scores

    def _answer_logprobs(
        self,
        sequences: list[list[int]],
        answers: list[list[int]],
        grid: torch.Tensor,
        features: object,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """log P(answer | prompt) per row, and log P(first "No" token) at the answer's start."""
        n = len(sequences)
        length = max(len(s) for s in sequences)
        # Left padding: every sequence ends at the last position, so only the last
        # (longest answer + 1) positions need logits, whatever the prompt lengths.
        ids = torch.full((n, length), self._pad_id, dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.long)
        for r, seq in enumerate(sequences):
            ids[r, length - len(seq) :] = torch.tensor(seq)
            mask[r, length - len(seq) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        token_types = (ids == self._video_token_id).long() * _VIDEO_TOKEN_TYPE
        # The vision features are computed once and shared by every row of the batch.
        shared = self._repeat_features(features, n)
        extra = {}
        if self.family == "qwen2_5_vl":
            seconds = self.preprocess.temporal_patch_size / self.config.fps
            extra["second_per_grid_ts"] = torch.full((n,), seconds, device=self.device)
        keep = max(len(ans) for ans in answers) + 1
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            mm_token_type_ids=token_types,
            video_grid_thw=grid.unsqueeze(0).expand(n, 3).to(self.device),
            mm_encoder_outputs={"video": shared},
            logits_to_keep=keep,
            use_cache=False,
            **extra,
        )
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)  # (n, keep, vocab)
        results = []
        for r, ans in enumerate(answers):
            a = len(ans)
            # Position keep-1-a predicts the first answer token, ... keep-2 the last.
            rows = logprobs[r, keep - 1 - a : keep - 1]
            target = torch.tensor(ans, device=rows.device)
            lp_answer = rows.gather(-1, target[:, None]).sum()
            lp_no_first = rows[0, self._no_ids[0]]
            results.append((lp_answer, lp_no_first))
        return results

    def _repeat_features(self, features: object, n: int) -> object:
        """The vision-encoder output with the video's embeddings repeated for ``n`` rows."""
        shared = type(features)(**dict(features.items()))
        shared.pooler_output = tuple(features.pooler_output) * n
        if self.family == "qwen3_vl":  # DeepStack: early vision features enter early LM layers
            shared.deepstack_features = [tuple(layer) * n for layer in features.deepstack_features]
        return shared
