#!/usr/bin/env bash
# The paper's Table 1 in one command: six generation runs on the same captions and per-image noise, then one report.
#
#   bash evaluation/table1.sh OUTDIR [flags for every generation run]
#
# Defaults are the paper's: SD v1.5, DDIM 50, w = 8, the 5,000 COCO captions of subset.csv, seed 6; one GPU.
# Rows: fixed embedding (50 steps), fixed with 70 steps (DATE's time), EBCA (official README values), Universal
# Guidance (h = CLIP, at the official guidance strength),
# DATE (h = CLIP), DATE (h = ImageReward); each folder is named by its row (`--name fixed`, ...: do not pass --name).
# Every run resumes where it stopped, so rerunning the script after an interruption finishes the table. Environment:
#   H_MODELS      --h_model flags for the runs that use an h (UG, DATE), e.g. "--h_model clip=/models/clip-l"
#   REPORT_FLAGS  flags for evaluation/report.py, e.g. "--reference coco.npz" (the paper's COCO statistics)
# Writes OUTDIR/<six folders>/ and OUTDIR/table1.md, .csv, .json.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    echo "error: usage: bash evaluation/table1.sh OUTDIR [flags for every generation run]" >&2
    exit 2
fi
out=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
read -r -a h_models <<< "${H_MODELS:-}"
read -r -a report_flags <<< "${REPORT_FLAGS:-}"

rows=(fixed fixed70 ebca ug_clip date_clip date_ir)  # each run's --name, so its folder is "$out"/*_name_<row>

generate() {  # generate ROW FLAGS...
    local row=$1
    shift
    echo "+ python generate_date.py --save_path $out $* --name $row" >&2
    python "$repo/generate_date.py" --save_path "$out" "$@" --name "$row"
}

generate fixed --baseline "$@"
generate fixed70 --baseline "$@" --steps 70   # fixed embedding with DATE's wall time
generate ebca --method ebca "$@"
# UG's official CLIP loss is -logits_per_image = -100*cos, and its default s = 5 weighs that; our h = CLIP is cos, so
# the official strength is s = 5 * 100 (docs/baselines.md)
generate ug_clip --method ug --h clip --optim_forward_guidance_wt 500 "${h_models[@]}" "$@"
generate date_clip --h clip "${h_models[@]}" "$@"
generate date_ir --h ir "${h_models[@]}" "$@"

folders=()
for row in "${rows[@]}"; do
    folders+=("$(ls -d "$out"/*_name_"$row")")
done
echo "+ python evaluation/report.py ${folders[*]} --baseline ${folders[0]} --out $out/table1.md ${report_flags[*]}" >&2
python "$repo/evaluation/report.py" "${folders[@]}" --baseline "${folders[0]}" --out "$out/table1.md" "${report_flags[@]}"
