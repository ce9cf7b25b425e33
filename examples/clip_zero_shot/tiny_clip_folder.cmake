# A Hugging Face CLIP folder in DIR around the tiny fixture tests/fixtures/clip/tiny_quick_gelu
# (FIX = tests/fixtures): its config and weights, a 32-pixel image processor, and a vocabulary
# that fits the model's 99-row embedding table. Included by the examples' check scripts.
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})
file(COPY ${FIX}/clip/tiny_quick_gelu/config.json ${FIX}/clip/tiny_quick_gelu/model.safetensors DESTINATION ${DIR})
file(WRITE ${DIR}/preprocessor_config.json
     "{\"size\": 32, \"crop_size\": 32, \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.5, 0.5, 0.5]}")
# A vocabulary that fits the tiny model's 99-row embedding table: every letter and '.' alone and
# word-final, plus merges that make "photo" and "of" one token each, so that "a photo of a
# plane." stays within the model's 16 positions.
set(vocab "{")
set(id 0)
foreach(c a b c d e f g h i j k l m n o p q r s t u v w x y z .)
  math(EXPR next "${id} + 1")
  string(APPEND vocab "\"${c}\": ${id}, \"${c}</w>\": ${next}, ")
  math(EXPR id "${id} + 2")
endforeach()
string(APPEND vocab "\"ph\": 54, \"pho\": 55, \"phot\": 56, \"photo</w>\": 57, \"of</w>\": 58, ")
file(WRITE ${DIR}/vocab.json "${vocab}\"<|startoftext|>\": 97, \"<|endoftext|>\": 98}")
file(WRITE ${DIR}/merges.txt "#version: 0.2\np h\nph o\npho t\nphot o</w>\no f</w>\n")
