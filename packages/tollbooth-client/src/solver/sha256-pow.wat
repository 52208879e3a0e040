;; SHA-256 proof-of-work search kernel, scalar: one nonce at a time.
;; Source of truth for the bytes in sha256-pow.wasm.ts (npm run build:wasm). See docs/solver.md.
;;
;; Each try hashes the final 64-byte block of UTF-8(salt ‖ nonce) from a state the caller
;; prepared (solver/midstate.ts). In that block every message word is fixed for the batch
;; except word j, which holds the nonce's last four ASCII digits: the caller writes the fixed
;; words, the state after rounds 0..j-1 (those rounds do not depend on the last digits), and
;; schedule words 16..t0-1 (likewise); the kernel writes word j from a table indexed by the
;; counter 0..9999, expands words t0..63, and runs rounds j..63.
;;
;; Memory (bytes, one 64 KiB page, written by the caller unless noted):
;;   0x0000  K[0..63]      round constants, i32 (data segment below)
;;   0x0100  MID[0..7]     state before the final block (for the feed-forward add), i32
;;   0x0120  ST[0..7]      state a..h after rounds 0..j-1, i32
;;   0x0200  W[0..63]      message schedule, i32
;;   0x0600  OUT[0..7]     digest words H0..H7 of the last hash, i32 (kernel writes)
;;   0x1000  TABLE[0..10003] big-endian word of the four ASCII digits of the counter, i32
(module
  (memory (export "memory") 1)
  (data (i32.const 0)
    "\98\2f\8a\42\91\44\37\71\cf\fb\c0\b5\a5\db\b5\e9\5b\c2\56\39\f1\11\f1\59\a4\82\3f\92\d5\5e\1c\ab"
    "\98\aa\07\d8\01\5b\83\12\be\85\31\24\c3\7d\0c\55\74\5d\be\72\fe\b1\de\80\a7\06\dc\9b\74\f1\9b\c1"
    "\c1\69\9b\e4\86\47\be\ef\c6\9d\c1\0f\cc\a1\0c\24\6f\2c\e9\2d\aa\84\74\4a\dc\a9\b0\5c\da\88\f9\76"
    "\52\51\3e\98\6d\c6\31\a8\c8\27\03\b0\c7\7f\59\bf\f3\0b\e0\c6\47\91\a7\d5\51\63\ca\06\67\29\29\14"
    "\85\0a\b7\27\38\21\1b\2e\fc\6d\2c\4d\13\0d\38\53\54\73\0a\65\bb\0a\6a\76\2e\c9\c2\81\85\2c\72\92"
    "\a1\e8\bf\a2\4b\66\1a\a8\70\8b\4b\c2\a3\51\6c\c7\19\e8\92\d1\24\06\99\d6\85\35\0e\f4\70\a0\6a\10"
    "\16\c1\a4\19\08\6c\37\1e\4c\77\48\27\b5\bc\b0\34\b3\0c\1c\39\4a\aa\d8\4e\4f\ca\9c\5b\f3\6f\2e\68"
    "\ee\82\8f\74\6f\63\a5\78\14\78\c8\84\08\02\c7\8c\fa\ff\be\90\eb\6c\50\a4\f7\a3\f9\be\f2\78\71\c6")

  ;; Hash counter c: word j := TABLE[c], expand t0..63, rounds j..63 from ST,
  ;; OUT := final state + MID.
  (func $hash (param $c i32) (param $j i32) (param $t0 i32)
    (local $a i32) (local $b i32) (local $c_ i32) (local $d i32)
    (local $e i32) (local $f i32) (local $g i32) (local $h i32)
    (local $t1 i32) (local $x i32) (local $y i32)
    (local $t i32) (local $kp i32) (local $wp i32) (local $q i32)
    (i32.store (i32.add (i32.const 0x200) (i32.shl (local.get $j) (i32.const 2)))
      (i32.load (i32.add (i32.const 0x1000) (i32.shl (local.get $c) (i32.const 2)))))
    ;; W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16] for t = t0..63; q = &W[t-16]
    (local.set $q (i32.add (i32.const 0x200) (i32.shl (i32.sub (local.get $t0) (i32.const 16)) (i32.const 2))))
    (block $expanded
      (loop $expand
        (br_if $expanded (i32.ge_u (local.get $q) (i32.const 704)))
        (local.set $x (i32.load offset=56 (local.get $q)))
        (local.set $y (i32.load offset=4 (local.get $q)))
        (i32.store offset=64 (local.get $q)
          (i32.add
            (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $x) (i32.const 17)) (i32.rotr (local.get $x) (i32.const 19))) (i32.shr_u (local.get $x) (i32.const 10)))
              (i32.load offset=36 (local.get $q)))
            (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $y) (i32.const 7)) (i32.rotr (local.get $y) (i32.const 18))) (i32.shr_u (local.get $y) (i32.const 3)))
              (i32.load (local.get $q)))))
        (local.set $q (i32.add (local.get $q) (i32.const 4)))
        (br $expand)))
    (local.set $a (i32.load offset=0x120 (i32.const 0)))
    (local.set $b (i32.load offset=0x124 (i32.const 0)))
    (local.set $c_ (i32.load offset=0x128 (i32.const 0)))
    (local.set $d (i32.load offset=0x12c (i32.const 0)))
    (local.set $e (i32.load offset=0x130 (i32.const 0)))
    (local.set $f (i32.load offset=0x134 (i32.const 0)))
    (local.set $g (i32.load offset=0x138 (i32.const 0)))
    (local.set $h (i32.load offset=0x13c (i32.const 0)))
    ;; rounds j.. up to the next multiple of 8, one at a time
    (local.set $t (local.get $j))
    (block $aligned
      (loop $single
        (br_if $aligned (i32.eqz (i32.and (local.get $t) (i32.const 7))))
        (local.set $kp (i32.shl (local.get $t) (i32.const 2)))
        (local.set $wp (i32.add (i32.const 0x200) (i32.shl (local.get $t) (i32.const 2))))
          ;; round +0: (a..h) = (a b c d e f g h)
          (local.set $t1 (i32.add (i32.add (local.get $h)
              (i32.xor (i32.xor (i32.rotr (local.get $e) (i32.const 6))
                           (i32.rotr (local.get $e) (i32.const 11)))
                           (i32.rotr (local.get $e) (i32.const 25))))
            (i32.add (i32.xor (local.get $g) (i32.and (local.get $e) (i32.xor (local.get $f) (local.get $g)))) (i32.add (i32.load offset=0 (local.get $kp)) (i32.load offset=0 (local.get $wp))))))
          (local.set $d (i32.add (local.get $d) (local.get $t1)))
          (local.set $h (i32.add (local.get $t1) (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $a) (i32.const 2))
                           (i32.rotr (local.get $a) (i32.const 13)))
                           (i32.rotr (local.get $a) (i32.const 22)))
              (i32.or (i32.and (local.get $a) (local.get $b)) (i32.and (local.get $c_) (i32.or (local.get $a) (local.get $b)))))))
        ;; the new a is in h, the new e in d: shift the roles by one
        (local.set $x (local.get $h))
        (local.set $h (local.get $g))
        (local.set $g (local.get $f))
        (local.set $f (local.get $e))
        (local.set $e (local.get $d))
        (local.set $d (local.get $c_))
        (local.set $c_ (local.get $b))
        (local.set $b (local.get $a))
        (local.set $a (local.get $x))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $single)))
    ;; the remaining rounds eight at a time (the roles come back to a..h after eight)
    (local.set $kp (i32.shl (local.get $t) (i32.const 2)))
    (local.set $wp (i32.add (i32.const 0x200) (i32.shl (local.get $t) (i32.const 2))))
    (loop $eight
          ;; round +0: (a..h) = (a b c d e f g h)
          (local.set $t1 (i32.add (i32.add (local.get $h)
              (i32.xor (i32.xor (i32.rotr (local.get $e) (i32.const 6))
                           (i32.rotr (local.get $e) (i32.const 11)))
                           (i32.rotr (local.get $e) (i32.const 25))))
            (i32.add (i32.xor (local.get $g) (i32.and (local.get $e) (i32.xor (local.get $f) (local.get $g)))) (i32.add (i32.load offset=0 (local.get $kp)) (i32.load offset=0 (local.get $wp))))))
          (local.set $d (i32.add (local.get $d) (local.get $t1)))
          (local.set $h (i32.add (local.get $t1) (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $a) (i32.const 2))
                           (i32.rotr (local.get $a) (i32.const 13)))
                           (i32.rotr (local.get $a) (i32.const 22)))
              (i32.or (i32.and (local.get $a) (local.get $b)) (i32.and (local.get $c_) (i32.or (local.get $a) (local.get $b)))))))
          ;; round +1: (a..h) = (h a b c d e f g)
          (local.set $t1 (i32.add (i32.add (local.get $g)
              (i32.xor (i32.xor (i32.rotr (local.get $d) (i32.const 6))
                           (i32.rotr (local.get $d) (i32.const 11)))
                           (i32.rotr (local.get $d) (i32.const 25))))
            (i32.add (i32.xor (local.get $f) (i32.and (local.get $d) (i32.xor (local.get $e) (local.get $f)))) (i32.add (i32.load offset=4 (local.get $kp)) (i32.load offset=4 (local.get $wp))))))
          (local.set $c_ (i32.add (local.get $c_) (local.get $t1)))
          (local.set $g (i32.add (local.get $t1) (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $h) (i32.const 2))
                           (i32.rotr (local.get $h) (i32.const 13)))
                           (i32.rotr (local.get $h) (i32.const 22)))
              (i32.or (i32.and (local.get $h) (local.get $a)) (i32.and (local.get $b) (i32.or (local.get $h) (local.get $a)))))))
          ;; round +2: (a..h) = (g h a b c d e f)
          (local.set $t1 (i32.add (i32.add (local.get $f)
              (i32.xor (i32.xor (i32.rotr (local.get $c_) (i32.const 6))
                           (i32.rotr (local.get $c_) (i32.const 11)))
                           (i32.rotr (local.get $c_) (i32.const 25))))
            (i32.add (i32.xor (local.get $e) (i32.and (local.get $c_) (i32.xor (local.get $d) (local.get $e)))) (i32.add (i32.load offset=8 (local.get $kp)) (i32.load offset=8 (local.get $wp))))))
          (local.set $b (i32.add (local.get $b) (local.get $t1)))
          (local.set $f (i32.add (local.get $t1) (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $g) (i32.const 2))
                           (i32.rotr (local.get $g) (i32.const 13)))
                           (i32.rotr (local.get $g) (i32.const 22)))
              (i32.or (i32.and (local.get $g) (local.get $h)) (i32.and (local.get $a) (i32.or (local.get $g) (local.get $h)))))))
          ;; round +3: (a..h) = (f g h a b c d e)
          (local.set $t1 (i32.add (i32.add (local.get $e)
              (i32.xor (i32.xor (i32.rotr (local.get $b) (i32.const 6))
                           (i32.rotr (local.get $b) (i32.const 11)))
                           (i32.rotr (local.get $b) (i32.const 25))))
            (i32.add (i32.xor (local.get $d) (i32.and (local.get $b) (i32.xor (local.get $c_) (local.get $d)))) (i32.add (i32.load offset=12 (local.get $kp)) (i32.load offset=12 (local.get $wp))))))
          (local.set $a (i32.add (local.get $a) (local.get $t1)))
          (local.set $e (i32.add (local.get $t1) (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $f) (i32.const 2))
                           (i32.rotr (local.get $f) (i32.const 13)))
                           (i32.rotr (local.get $f) (i32.const 22)))
              (i32.or (i32.and (local.get $f) (local.get $g)) (i32.and (local.get $h) (i32.or (local.get $f) (local.get $g)))))))
          ;; round +4: (a..h) = (e f g h a b c d)
          (local.set $t1 (i32.add (i32.add (local.get $d)
              (i32.xor (i32.xor (i32.rotr (local.get $a) (i32.const 6))
                           (i32.rotr (local.get $a) (i32.const 11)))
                           (i32.rotr (local.get $a) (i32.const 25))))
            (i32.add (i32.xor (local.get $c_) (i32.and (local.get $a) (i32.xor (local.get $b) (local.get $c_)))) (i32.add (i32.load offset=16 (local.get $kp)) (i32.load offset=16 (local.get $wp))))))
          (local.set $h (i32.add (local.get $h) (local.get $t1)))
          (local.set $d (i32.add (local.get $t1) (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $e) (i32.const 2))
                           (i32.rotr (local.get $e) (i32.const 13)))
                           (i32.rotr (local.get $e) (i32.const 22)))
              (i32.or (i32.and (local.get $e) (local.get $f)) (i32.and (local.get $g) (i32.or (local.get $e) (local.get $f)))))))
          ;; round +5: (a..h) = (d e f g h a b c)
          (local.set $t1 (i32.add (i32.add (local.get $c_)
              (i32.xor (i32.xor (i32.rotr (local.get $h) (i32.const 6))
                           (i32.rotr (local.get $h) (i32.const 11)))
                           (i32.rotr (local.get $h) (i32.const 25))))
            (i32.add (i32.xor (local.get $b) (i32.and (local.get $h) (i32.xor (local.get $a) (local.get $b)))) (i32.add (i32.load offset=20 (local.get $kp)) (i32.load offset=20 (local.get $wp))))))
          (local.set $g (i32.add (local.get $g) (local.get $t1)))
          (local.set $c_ (i32.add (local.get $t1) (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $d) (i32.const 2))
                           (i32.rotr (local.get $d) (i32.const 13)))
                           (i32.rotr (local.get $d) (i32.const 22)))
              (i32.or (i32.and (local.get $d) (local.get $e)) (i32.and (local.get $f) (i32.or (local.get $d) (local.get $e)))))))
          ;; round +6: (a..h) = (c d e f g h a b)
          (local.set $t1 (i32.add (i32.add (local.get $b)
              (i32.xor (i32.xor (i32.rotr (local.get $g) (i32.const 6))
                           (i32.rotr (local.get $g) (i32.const 11)))
                           (i32.rotr (local.get $g) (i32.const 25))))
            (i32.add (i32.xor (local.get $a) (i32.and (local.get $g) (i32.xor (local.get $h) (local.get $a)))) (i32.add (i32.load offset=24 (local.get $kp)) (i32.load offset=24 (local.get $wp))))))
          (local.set $f (i32.add (local.get $f) (local.get $t1)))
          (local.set $b (i32.add (local.get $t1) (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $c_) (i32.const 2))
                           (i32.rotr (local.get $c_) (i32.const 13)))
                           (i32.rotr (local.get $c_) (i32.const 22)))
              (i32.or (i32.and (local.get $c_) (local.get $d)) (i32.and (local.get $e) (i32.or (local.get $c_) (local.get $d)))))))
          ;; round +7: (a..h) = (b c d e f g h a)
          (local.set $t1 (i32.add (i32.add (local.get $a)
              (i32.xor (i32.xor (i32.rotr (local.get $f) (i32.const 6))
                           (i32.rotr (local.get $f) (i32.const 11)))
                           (i32.rotr (local.get $f) (i32.const 25))))
            (i32.add (i32.xor (local.get $h) (i32.and (local.get $f) (i32.xor (local.get $g) (local.get $h)))) (i32.add (i32.load offset=28 (local.get $kp)) (i32.load offset=28 (local.get $wp))))))
          (local.set $e (i32.add (local.get $e) (local.get $t1)))
          (local.set $a (i32.add (local.get $t1) (i32.add
              (i32.xor (i32.xor (i32.rotr (local.get $b) (i32.const 2))
                           (i32.rotr (local.get $b) (i32.const 13)))
                           (i32.rotr (local.get $b) (i32.const 22)))
              (i32.or (i32.and (local.get $b) (local.get $c_)) (i32.and (local.get $d) (i32.or (local.get $b) (local.get $c_)))))))
      (local.set $wp (i32.add (local.get $wp) (i32.const 32)))
      (local.set $kp (i32.add (local.get $kp) (i32.const 32)))
      (br_if $eight (i32.lt_u (local.get $kp) (i32.const 256))))
    (i32.store offset=1536 (i32.const 0) (i32.add (local.get $a) (i32.load offset=0x100 (i32.const 0))))
    (i32.store offset=1540 (i32.const 0) (i32.add (local.get $b) (i32.load offset=0x104 (i32.const 0))))
    (i32.store offset=1544 (i32.const 0) (i32.add (local.get $c_) (i32.load offset=0x108 (i32.const 0))))
    (i32.store offset=1548 (i32.const 0) (i32.add (local.get $d) (i32.load offset=0x10c (i32.const 0))))
    (i32.store offset=1552 (i32.const 0) (i32.add (local.get $e) (i32.load offset=0x110 (i32.const 0))))
    (i32.store offset=1556 (i32.const 0) (i32.add (local.get $f) (i32.load offset=0x114 (i32.const 0))))
    (i32.store offset=1560 (i32.const 0) (i32.add (local.get $g) (i32.load offset=0x118 (i32.const 0))))
    (i32.store offset=1564 (i32.const 0) (i32.add (local.get $h) (i32.load offset=0x11c (i32.const 0)))))

  ;; First counter in [start, end) whose H0 ≤ target (unsigned), or -1. 
  (func (export "search") (param $start i32) (param $end i32) (param $j i32) (param $t0 i32) (param $target i32) (result i32)
    (local $c i32)
    (local.set $c (local.get $start))
    (block $none
      (loop $next
        (br_if $none (i32.ge_s (local.get $c) (local.get $end)))
        (call $hash (local.get $c) (local.get $j) (local.get $t0))
        (if (i32.le_u (i32.load (i32.const 0x600)) (local.get $target))
          (then (return (local.get $c))))
        (local.set $c (i32.add (local.get $c) (i32.const 1)))
        (br $next)))
    (i32.const -1))

  ;; Hash counter c and leave its digest words in OUT.
  (func (export "digest") (param $c i32) (param $j i32) (param $t0 i32)
    (call $hash (local.get $c) (local.get $j) (local.get $t0))))
