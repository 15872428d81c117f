"""Korean cleaning (NFC!), filters and de-duplication."""
from __future__ import annotations

import unicodedata

import pytest

from koforge._utils.errors import ConfigError
from koforge.data.clean import CleanConfig, clean_text, exact_dedup, hangul_ratio, near_dedup


def test_decomposed_hangul_becomes_syllables():
    composed = "한국어 텍스트 정규화"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed and len(decomposed) > len(composed)
    assert clean_text(decomposed) == composed
    assert clean_text(decomposed, CleanConfig(normalization="none", normalize_whitespace=False)) == decomposed


def test_html_control_and_whitespace():
    raw = "<p>안녕&nbsp;하세요</p>\x00\x07  <br/>반갑\u200b습니다 &amp; 좋아요\r\n\r\n\r\n\t끝  "
    assert clean_text(raw) == "안녕 하세요 반갑습니다 & 좋아요\n\n끝"
    assert clean_text(raw, CleanConfig(single_line=True)) == "안녕 하세요 반갑습니다 & 좋아요 끝"
    assert clean_text("a < b 그리고 c > d") == "a < b 그리고 c > d"  # not a tag
    page = '<style type="text/css">p { color: red }</style><SCRIPT>var s = "<b>광고</b>";</SCRIPT><p>본문</p><script src="x.js"></script>끝'
    assert clean_text(page) == "본문 끝"  # code inside <script>/<style> is not text


def test_korean_title_brackets_are_text_not_tags():
    """NSMC and the petitions write titles as <Love Letter>; only markup-shaped tags go."""
    for text in ["<Love Letter>, <500 Days Of Summer>", "<BOB><로마><24> 이 세개", "<In English>", "x<y 그리고 a>b",
                 "i<n && j>0", "<v 아랫님 즐 ㅗ>"]:
        assert clean_text(text) == text
    raw = '<hi style="color: rgb(255, 0, 0);">빨강</hi><P>문단<BR>줄<br />끝</P><a href=http://x.kr/?a=b>링크</a><!-- x -->'
    assert clean_text(raw) == "빨강 문단 줄 끝 링크"
    assert clean_text("<" + "a" * 50_000) is not None  # no quadratic backtracking on a long run after "<"


def test_filters():
    cfg = CleanConfig(min_chars=5, max_chars=20, min_hangul_ratio=0.5)
    assert clean_text("짧다", cfg) is None
    assert clean_text("가" * 21, cfg) is None
    assert clean_text("mostly English text 한", cfg) is None
    assert clean_text("대부분 한국어 text", cfg) == "대부분 한국어 text"
    assert clean_text("   \n\t ") is None
    assert hangul_ratio("한국 ab") == 0.5


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="normalization"):
        CleanConfig(normalization="nfd")
    with pytest.raises(ConfigError, match="min_hangul_ratio"):
        CleanConfig(min_hangul_ratio=1.5)


def test_exact_and_near_dedup():
    docs = ["같은 문서입니다", "다른 문서", "같은 문서입니다", "다른 문서"]
    assert list(exact_dedup(docs)) == ["같은 문서입니다", "다른 문서"]
    base = "이 영화는 정말 재미있었고 배우들의 연기도 훌륭했습니다. 다시 보고 싶은 영화입니다. " * 3
    near = base.replace("훌륭했습니다", "훌륭했어요")
    other = "완전히 다른 내용의 리뷰입니다. 지루하고 긴 영화였어요. 추천하지 않습니다. " * 3
    assert list(near_dedup([base, near, other], threshold=0.7)) == [base, other]


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_near_duplicate_filter_decides_as_datasketch_lsh(threshold):
    """The compact band index answers what datasketch's MinHashLSH.query answers, text by text."""
    from datasketch import MinHashLSH

    from koforge.data.clean import NearDuplicateFilter

    stems = ["이 영화는 정말 재미있었고 배우들의 연기도 훌륭했습니다", "완전히 다른 내용의 리뷰입니다 지루하고 긴 영화였어요",
             "국민청원 게시판에 올립니다 교통 안전 대책을 마련해 주십시오", "오늘 날씨가 맑아서 공원에 산책을 다녀왔습니다"]
    texts = [f"{stem} {tail}" for stem in stems for tail in ("", "정말로", "다시 보고 싶다", "ㅋㅋ", "별로")]
    texts += [t[::-1] for t in texts[:5]]
    ours = NearDuplicateFilter(threshold=threshold)
    lsh = MinHashLSH(threshold=threshold, num_perm=ours.num_perm)
    expected = []
    for i, text in enumerate(texts):
        m = ours._minhash(text)
        duplicate = bool(lsh.query(m))
        if not duplicate:
            lsh.insert(str(i), m)
        expected.append(duplicate)
    assert [ours.is_duplicate(t) for t in texts] == expected
    assert 0 < sum(expected) < len(texts)
