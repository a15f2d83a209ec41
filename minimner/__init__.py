"""minimner: a from-scratch NumPy/CuPy reference implementation of multimodal NER
on social media (Liu et al., MSCMT/MGCMT), with hand-written forward and backward
passes for every layer.

Dimension legend, the one every file of the package uses in its shape comments (the same
table as docs/README.md §2; each module repeats in its docstring the letters it needs):

    B        batch size
    T        word-piece positions, [CLS] and [SEP] included
    W        words of a sentence
    C        hidden size; in convolutions and batch norm, the (input) channels
    C_out    output channels of a convolution
    C_img    channels of the image feature map (2048 for ResNet-50 and deeper, 512 for ResNet-18/34)
    H or h   attention heads;  D  head size (C = H·D)
    F        feed-forward inner size (4C)
    L        input length of a 1-d convolution or pooling (Lo the output length)
    R        image regions of the grid (49 = 7×7), region r = 7·row + col
    S        crop size of an image (224);  Hi×Wi / Ho×Wo  input / output height × width;  kh×kw  kernel
    O        object slots (5)
    K        main tags, pad id 0 included (13);  Ka  auxiliary span tags (7)
    E        augmentation vector size (the lexicon's vector size; Da in some comments)
    V        vocabulary size: word pieces (BERT), or a lexicon's words (lexicon/)
    Vo, Vc   rows of the object-label embedding (85); characters of the char vocabulary
    Lw       characters per word (char-CNN);  Lq, Lk  query and key/value lengths of an attention
    Q, k     query words and neighbours per word of a lexicon search
    N, M, P  local counts defined where used: N rows of a flattened (N, C) view (or output
             positions, or table words), M values per batch-norm channel, P unrolled patch length
"""
__version__ = "0.1.0"

from minimner import backend  # noqa: F401
