"""evaluation/multi_concept.py: Attend-and-Excite's metrics against the recording of their own scripts
(tools/make_multi_concept_fixture.py), the BLIP decoding settings, both image layouts, per-category summaries and the
command line."""
import csv
import json
import os

import numpy as np
import pytest
import torch
from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration

from date.io.errors import UserInputError
from evaluation import blip_captions, concept_clip, multi_concept
from evaluation.concept_scores import ConceptModels
from tests.support import clip_b16_recipe as recipe
from tests.support.evaluation_helpers import assert_one_line_error
from tests.support.image_reward_recipe import bert_vocab_path
from tests.support.paths import FIXTURES, REPO

CATEGORIES = ["animals", "animals_objects", "objects", "animals_objects"]


@pytest.fixture(scope="module")
def reference():
    with open(os.path.join(FIXTURES, "multi_concept_reference.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def recipe_clip(tmp_path_factory):
    return recipe.save_hf_dir(str(tmp_path_factory.mktemp("recipe_clip")))


def write_caption_file(path, captions, categories=None):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["caption"] + (["category"] if categories else []))
        for i, caption in enumerate(captions):
            writer.writerow([caption] + ([categories[i]] if categories else []))
    return str(path)


def recipe_folder(folder, layout="copies"):
    """The recorded images as <k>_<j>.png (or only copy 0, as <k>.png) and a caption file with categories."""
    saved = recipe.save_images(str(folder), "copies")
    if layout == "single":
        for k, j, path in saved:
            os.replace(path, os.path.join(folder, f"{k}.png")) if j == 0 else os.remove(path)
    return write_caption_file(folder / "prompts.csv", recipe.PROMPTS, CATEGORIES)


def test_the_checkpoint_and_templates_are_the_recorded_ones(reference):
    rebuilt = recipe.fingerprint(recipe.openai_state_dict())
    assert rebuilt.keys() == reference["checkpoint_fingerprint"].keys()
    for key, values in reference["checkpoint_fingerprint"].items():
        assert np.allclose(rebuilt[key], values, rtol=1e-9, atol=1e-9), key
    assert list(concept_clip.imagenet_templates()) == reference["imagenet_templates"]
    assert len(reference["imagenet_templates"]) == 80
    assert reference["prompts"] == recipe.PROMPTS


def test_scores_match_attend_and_excites_scripts(reference, recipe_clip, tmp_path):
    """Full prompt, both halves (so the minimum), and the text-text similarity of the recorded captions."""
    clip = concept_clip.ConceptCLIP(recipe_clip, torch.device("cpu"))
    images = recipe.make_images()
    for record in reference["images"]:
        prompt = recipe.PROMPTS[record["prompt"]]
        image = images[recipe.IMAGES_PER_PROMPT[record["prompt"]][record["copy"]]]
        features = clip.image_features([clip.transform(image)])
        first, second = concept_clip.prompt_halves(prompt)
        ours = {"full_text": prompt, "first_half": first, "second_half": second}
        for key, text in ours.items():
            assert float(features @ clip.templated_features([text])[0]) == pytest.approx(record[key], abs=1e-5), key
        text_text = float(clip.text_features([record["caption"]])[0] @ clip.templated_features([prompt])[0])
        assert text_text == pytest.approx(record["text_similarity"], abs=1e-5)
    # the command, on the same images as files: per-image scores and the overall means the reference aggregated
    result = multi_concept.main([str(tmp_path), "--text_path", recipe_folder(tmp_path), "--clip_model", recipe_clip,
                                 "--caption_model", "none", "--device", "cpu", "--num_workers", "0",
                                 "--resamples", "100"])
    by_image = {(r["caption_index"], r["copy"]): r for r in result["images"]}
    for record in reference["images"]:
        ours = by_image[record["prompt"], record["copy"]]
        assert ours["full_prompt"] == pytest.approx(record["full_text"], abs=1e-5)
        assert ours["min_object"] == pytest.approx(min(record["first_half"], record["second_half"]), abs=1e-5)
    overall = result["summary"]["all"]
    assert overall["full_prompt"]["mean"] == pytest.approx(reference["aggregated"]["full_text_aggregation"], abs=1e-5)
    assert overall["min_object"]["mean"] == pytest.approx(
        reference["aggregated"]["min_first_second_aggregation"], abs=1e-5)


def test_templates_and_halves_follow_their_string_rules():
    assert concept_clip.templated("a cat and a frog", ["a photo of a {}.", "a photo of the {}.", "itap of a {}."]) == [
        "a photo of a cat and a frog.", "a photo of a cat and a frog.", "itap of a cat and a frog."]
    assert concept_clip.prompt_halves("a horse with a glasses") == ("a horse", "a glasses")
    assert concept_clip.prompt_halves("a cat with a hat and a dog") == ("a cat with a hat", "a dog")  # " and " first
    with pytest.raises(UserInputError, match="cannot split"):
        concept_clip.prompt_halves("a lonely cat")


def tiny_blip(folder):
    """A tiny random BLIP captioner in transformers' format, with BLIP's BERT tokenizer ([DEC] as bos)."""
    tokenizer = BertTokenizer(bert_vocab_path(), bos_token="[DEC]", additional_special_tokens=["[ENC]"])
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "encoder_hidden_size": 32, "bos_token_id": tokenizer.bos_token_id,
            "sep_token_id": tokenizer.sep_token_id, "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 64, "patch_size": 16}
    torch.manual_seed(0)
    BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_captions_use_attend_and_excites_decoding(tmp_path, monkeypatch):
    """LAVIS's defaults: 3 beams, 10 to 30 tokens, no sampling, penalty 1; the prompt fed and cut off."""
    assert blip_captions.PROMPT == "a picture of "
    assert {k: blip_captions.DECODING[k] for k in ("num_beams", "max_length", "min_length", "do_sample",
                                                   "repetition_penalty")} == {
        "num_beams": 3, "max_length": 30, "min_length": 10, "do_sample": False, "repetition_penalty": 1.0}
    captioner = blip_captions.BlipCaptioner(tiny_blip(tmp_path / "blip"), torch.device("cpu"))
    seen = {}
    generate = captioner.model.generate

    def spy(**kwargs):
        seen.update(kwargs, input_ids=kwargs["input_ids"].clone())  # generate swaps [DEC] in, in place
        seen["output"] = generate(**kwargs)
        return seen["output"]

    monkeypatch.setattr(captioner.model, "generate", spy)
    images = recipe.make_images()[:2]
    pixels = [captioner.transform(image) for image in images]
    assert pixels[0].shape == (3, 64, 64)  # the whole image resized to the model's square, not cropped
    captions = captioner.captions(pixels)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert {k: seen[k] for k in blip_captions.DECODING} == blip_captions.DECODING
    prompt_ids = captioner.tokenizer(blip_captions.PROMPT).input_ids
    assert seen["input_ids"][0].tolist() == prompt_ids  # [CLS] a picture of [SEP]: BLIP swaps in [DEC], drops [SEP]
    decoded = captioner.tokenizer.batch_decode(seen["output"], skip_special_tokens=True)
    assert [text[len("a picture of "):] for text in decoded] == captions  # cut by length, as LAVIS cuts
    assert seen["output"].shape[1] <= 30


def test_blip_preprocessing_is_lavis_eval():
    image = recipe.make_images()[1]
    pixels = blip_captions.blip_pixels(image)
    assert pixels.shape == (3, 384, 384)
    import torchvision.transforms as T  # LAVIS's blip_image_eval transform, composed as it composes it
    lavis = T.Compose([T.Resize((384, 384), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                       T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
    assert torch.equal(pixels, lavis(image))


def test_text_text_end_to_end_with_a_tiny_blip(recipe_clip, tmp_path):
    blip = tiny_blip(tmp_path / "blip")
    folder = tmp_path / "images"
    result = multi_concept.main([str(folder), "--text_path", recipe_folder(folder), "--clip_model", recipe_clip,
                                 "--caption_model", blip, "--device", "cpu", "--num_workers", "0", "--bs", "3",
                                 "--resamples", "50"])
    clip = concept_clip.ConceptCLIP(recipe_clip, torch.device("cpu"))
    for record in result["images"]:  # each score is the CLIP text-text similarity of the caption it records
        expected = float(clip.text_features([record["blip_caption"]])[0] @
                         clip.templated_features([record["caption"]])[0])
        assert record["text_text"] == pytest.approx(expected, abs=1e-5)
    assert set(result["summary"]["all"]) == {"full_prompt", "min_object", "text_text"}
    assert os.path.isfile(folder / "ae_text_text_scores.npz")


@pytest.mark.parametrize("layout", ["copies", "single"])
def test_layouts_and_categories(layout, tmp_path):
    caption_file = recipe_folder(tmp_path, layout)
    result = multi_concept.main([str(tmp_path), "--text_path", caption_file, "--clip_model", "toy", "--caption_model",
                                 "none", "--device", "cpu", "--num_workers", "0", "--resamples", "50"])
    copies = 2 if layout == "copies" else 1
    assert len(result["images"]) == 4 * copies
    assert [r["copy"] for r in result["images"][:copies]] == ([0, 1] if copies == 2 else [None])
    summary = result["summary"]
    assert set(summary) == {"all", "animals", "animals_objects", "objects"}
    assert "text_text" not in summary["all"]
    assert summary["animals_objects"]["full_prompt"]["n"] == 2 * copies
    assert summary["animals_objects"]["full_prompt"]["prompts"] == 2
    scores = {k: [r["min_object"] for r in result["images"] if r["caption_index"] == k] for k in range(4)}
    assert summary["animals_objects"]["min_object"]["mean"] == pytest.approx(np.mean(scores[1] + scores[3]))
    overall = summary["all"]["min_object"]
    assert overall["low"] <= overall["mean"] <= overall["high"]
    assert summary["animals"]["full_prompt"]["low"] is None  # one prompt: no interval (JSON null, not NaN)
    with open(tmp_path / "multi_concept.json") as f:
        assert json.loads(f.read(), parse_constant=pytest.fail)["summary"] == summary
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]  # written atomically


def test_without_a_category_column_only_the_overall_summary(tmp_path):
    recipe.save_images(str(tmp_path), "copies")
    captions = write_caption_file(tmp_path / "plain.csv", recipe.PROMPTS)
    result = multi_concept.main([str(tmp_path), "--text_path", captions, "--clip_model", "toy", "--caption_model",
                                 "none", "--device", "cpu", "--num_workers", "0", "--resamples", "20"])
    assert set(result["summary"]) == {"all"} and result["images"][0]["category"] is None


def test_toy_pipeline_images_end_to_end(generate_date_cli, tmp_path):
    """Images from the toy-format pipeline (generate_date.py), then the command on its folder and record."""
    generate_date_cli("--baseline", "--images_per_caption", "2", "--name", "mc", save=tmp_path / "out")
    folder = next((tmp_path / "out").iterdir())
    assert os.path.isfile(folder / "1_1.png")
    with pytest.raises(SystemExit) as excinfo:  # its captions are not two-object prompts
        multi_concept.main([str(folder), "--clip_model", "toy", "--caption_model", "none", "--device", "cpu"])
    assert excinfo.value.code == 2
    two_objects = write_caption_file(tmp_path / "two.csv", ["a red circle and a blue square", "a dog with a hat"])
    for name in os.listdir(folder):
        if name == "subset.csv":
            os.replace(two_objects, folder / name)
    result = multi_concept.main([str(folder), "--clip_model", "toy", "--caption_model", "none", "--device", "cpu",
                                 "--num_workers", "0", "--resamples", "20"])
    assert len(result["images"]) == 4 and result["summary"]["all"]["full_prompt"]["n"] == 4


def test_bad_input_is_one_error_line(tmp_path, capsys):
    recipe.save_images(str(tmp_path), "copies")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([str(tmp_path / "missing")], "image folder not found"),
        ([str(empty)], "no image of caption 0"),
        ([str(tmp_path)], "subset.csv"),  # no record and no --text_path
        ([str(tmp_path), "--text_path", write_caption_file(tmp_path / "one.csv", ["a cat and a frog"] + ["x"] * 3)],
         "cannot split"),
        ([str(tmp_path), "--text_path", write_caption_file(tmp_path / "ok.csv", recipe.PROMPTS),
          "--clip_model", str(tmp_path / "no_such_clip")], "model directory not found"),
    ]
    broken = tmp_path / "broken"
    recipe.save_images(str(broken), "copies")
    (broken / "2_1.png").write_bytes(b"not a png")
    cases.append(([str(broken), "--text_path", str(tmp_path / "ok.csv"), "--clip_model", "toy"], "cannot read image"))
    for argv, fragment in cases:
        with pytest.raises(SystemExit) as excinfo:
            multi_concept.main(argv + ["--caption_model", "none", "--device", "cpu", "--num_workers", "0"])
        assert_one_line_error(capsys, excinfo, fragment)


def test_models_load_lazily_and_none_skips_the_captioner():
    models = ConceptModels("toy", "none", torch.device("cpu"))
    assert [m.key for m in models.metrics()] == ["full_prompt", "min_object"]
    assert models.clip_source == os.path.join(REPO, "assets", "toy", "clip")
    assert "clip" not in vars(models) and "captioner" not in vars(models)


def test_report_pairs_the_metrics_and_reuses_saved_scores(tmp_path, monkeypatch):
    from evaluation import report

    folders = []
    for name in ("fixed", "method"):
        folder = tmp_path / name
        recipe_folder(folder)
        if name == "method":  # another 'method': the first image of each prompt brightened
            for k in range(4):
                image = recipe.make_images()[recipe.IMAGES_PER_PROMPT[k][0]].point(lambda v: min(255, v + 40))
                image.save(folder / f"{k}_0.png")
        multi_concept.main([str(folder), "--text_path", str(folder / "prompts.csv"), "--clip_model", "toy",
                            "--caption_model", "none", "--device", "cpu", "--num_workers", "0", "--resamples", "20"])
        folders.append(str(folder))
    monkeypatch.setattr(concept_clip, "ConceptCLIP", pytest.fail)  # every score must come from the saved files
    rows = report.main([*folders, "--baseline", folders[0], "--metrics", "full_prompt", "min_object", "--num_eval",
                        "4", "--text_path", str(tmp_path / "fixed" / "prompts.csv"), "--ae_clip_model", "toy",
                        "--caption_model", "none", "--resamples", "50", "--out", str(tmp_path / "report.md"),
                        "--device", "cpu", "--num_workers", "0"])
    with open(tmp_path / "method" / "multi_concept.json") as f:
        saved = json.load(f)
    assert rows[1]["ae_full_prompt"] == pytest.approx(saved["summary"]["all"]["full_prompt"]["mean"], abs=1e-6)
    assert rows[1]["n"] == 8 and "ae_full_prompt_diff" in rows[1] and "ae_min_object_win_rate" in rows[1]
    assert "A&E full prompt" in (tmp_path / "report.md").read_text()


def test_report_text_text_needs_a_captioner(tmp_path, capsys):
    from evaluation import report

    with pytest.raises(SystemExit) as excinfo:
        report.main([str(tmp_path), "--metrics", "text_text", "--caption_model", "none"])
    assert excinfo.value.code == 2 and "needs a captioner" in capsys.readouterr().err
