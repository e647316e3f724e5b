#!/usr/bin/env bash
# Attend-and-Excite's multi-concept comparison in one command: six generation runs on the same prompts and per-image
# noise, Attend-and-Excite's metrics of each folder (per category), then one report paired by caption and seed.
#
#   bash evaluation/multi_concept.sh OUTDIR [flags for every generation run]
#
# Prompts: the 276 of Attend-and-Excite (assets/prompts/attend_excite.csv), IMAGES_PER_CAPTION seeds each (default 64,
# Attend-and-Excite's protocol), generate_date.py's defaults otherwise (SD v1.5, seed 6). Rows: fixed embedding,
# Attend-and-Excite (--method ae), CONFORM (--method conform), DATE (h = CLIP), DATE (h = ImageReward) and
# Attend-and-Excite + DATE (--method ae+date); each folder is named by its row (do not pass --name or --text_path).
# Every run resumes where it stopped, so rerunning the script after an interruption finishes the table. Environment:
#   TEXT_PATH           the prompts (CSV with caption and category columns; default the bundled set)
#   IMAGES_PER_CAPTION  seeds per prompt (default 64)
#   H_MODELS            --h_model flags for the runs that use an h, e.g. "--h_model clip=/models/clip-l"
#   CLIP_MODEL          CLIP of the metrics (default openai/clip-vit-base-patch16; toy = the bundled toy CLIP)
#   CAPTION_MODEL       BLIP captioner of the text-text metric (default Salesforce/blip-image-captioning-base;
#                       none skips that metric)
#   METRIC_FLAGS        further flags for evaluation/multi_concept.py and the report, e.g. "--device cuda --bs 64"
#   REPORT_FLAGS        further flags for evaluation/report.py only, e.g. "--grid 8"
# Writes OUTDIR/<six folders>/ (each with multi_concept.json) and OUTDIR/multi_concept.md, .csv, .json, .png.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    echo "error: usage: bash evaluation/multi_concept.sh OUTDIR [flags for every generation run]" >&2
    exit 2
fi
out=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
text_path=${TEXT_PATH:-$repo/assets/prompts/attend_excite.csv}
images_per_caption=${IMAGES_PER_CAPTION:-64}
caption_model=${CAPTION_MODEL:-Salesforce/blip-image-captioning-base}
read -r -a h_models <<< "${H_MODELS:-}"
read -r -a metric_flags <<< "${METRIC_FLAGS:-}"
read -r -a report_flags <<< "${REPORT_FLAGS:-}"
models=(--caption_model "$caption_model")
if [ -n "${CLIP_MODEL:-}" ]; then
    models+=(--clip_model "$CLIP_MODEL")
fi
metrics=(full_prompt min_object text_text)
if [ "$caption_model" = none ]; then
    metrics=(full_prompt min_object)
fi

rows=(fixed ae conform date_clip date_ir ae_date)  # each run's --name, so its folder is "$out"/*_name_<row>

generate() {  # generate ROW FLAGS...
    local row=$1
    shift
    echo "+ python generate_date.py --save_path $out $* --name $row" >&2
    python "$repo/generate_date.py" --save_path "$out" --text_path "$text_path" \
        --images_per_caption "$images_per_caption" "$@" --name "$row"
}

generate fixed --baseline "$@"
generate ae --method ae "$@"
generate conform --method conform "$@"
generate date_clip --h clip "${h_models[@]}" "$@"
generate date_ir --h ir "${h_models[@]}" "$@"
generate ae_date --method ae+date "${h_models[@]}" "$@"

folders=()
for row in "${rows[@]}"; do
    folder=$(ls -d "$out"/*_name_"$row")
    folders+=("$folder")
    echo "+ python evaluation/multi_concept.py $folder --text_path $text_path ${models[*]} ${metric_flags[*]}" >&2
    python "$repo/evaluation/multi_concept.py" "$folder" --text_path "$text_path" "${models[@]}" "${metric_flags[@]}"
done
num_eval=$(python -c 'import sys; from date.io.captions import read_captions; print(len(read_captions(sys.argv[1])))' \
    "$text_path")
report_models=(--caption_model "$caption_model")
if [ -n "${CLIP_MODEL:-}" ]; then
    report_models+=(--ae_clip_model "$CLIP_MODEL")
fi
echo "+ python evaluation/report.py ${folders[*]} --baseline ${folders[0]} --metrics ${metrics[*]} --out $out/multi_concept.md" >&2
python "$repo/evaluation/report.py" "${folders[@]}" --baseline "${folders[0]}" --metrics "${metrics[@]}" \
    --text_path "$text_path" --num_eval "$num_eval" "${report_models[@]}" --out "$out/multi_concept.md" \
    "${metric_flags[@]}" "${report_flags[@]}"
