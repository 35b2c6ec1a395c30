# d402-program: payment channels with Merkle-root allocation, for sBPF V0.
#
# Assembled by build.rs with sbpf-assembler (SbpfArch::V0). The layout of every account and
# instruction is documented in ../README.md and mirrored by src/lib.rs; keep the three in step.
#
# Registers: r1..r5 arguments and scratch, r0 result, r6..r9 kept across calls (the VM saves and
# restores them), r9 = HEAP in every handler. Handlers are reached by jumps from the entrypoint, so
# `exit` in a handler ends the program with r0 as its result (0 = success, N = Custom(N)); helpers
# are called and return 0 (success) or an error code, which the handler passes on through `fail`.

.equ HEAP, 0x300000000
.equ MAX_ACCOUNTS, 16

# Heap layout (scratch; the heap is zeroed at each instruction).
.equ H_ACCTS, 0          # u64[16]: pointer to each serialized account (duplicates resolved)
.equ H_NACC, 128
.equ H_IX, 136           # pointer to instruction data
.equ H_IXLEN, 144
.equ H_PROG, 152         # pointer to this program's id
.equ H_MSG1, 256         # expected voucher message (48 bytes)
.equ H_MSG2, 320         # expected root message (88 bytes)
.equ H_EXP, 448          # expected signatures: (pk ptr, msg ptr, len) x 2 = 48 bytes
.equ H_HASH, 512         # running Merkle hash
.equ H_HASH2, 544
.equ H_SHA, 576          # SolBytes[3] for sol_sha256
.equ H_SEEDS, 640        # SolSignerSeed[4]
.equ H_SIGNERS, 704      # SolSignerSeeds[1]
.equ H_PDA, 736          # derived address
.equ H_CMP, 768          # sol_memcmp_ result
.equ H_CLOCK, 776        # Clock (40 bytes)
.equ H_CPI_IX, 856       # SolInstruction (40 bytes)
.equ H_CPI_DATA, 896     # instruction data (64 bytes)
.equ H_CPI_METAS, 960    # SolAccountMeta[4] (64 bytes)
.equ H_CPI_INFOS, 1024   # SolAccountInfo[4] (224 bytes)
.equ H_BUMP, 1248        # the claim PDA's canonical bump
.equ H_PRE, 1256         # the Ed25519 precompile's data (pointer), from load_precompile
.equ H_PRELEN, 1264      # its length (in: the number of signatures it must carry)
.equ H_REL, 1280         # expected release message: "d402rel1" || escrow || worker tokens (<= 296)

# Serialized account (loader v2/v3 aligned input).
.equ A_SIGNER, 1
.equ A_WRITABLE, 2
.equ A_KEY, 8
.equ A_OWNER, 40
.equ A_LAMPORTS, 72
.equ A_DLEN, 80
.equ A_DATA, 88

# Channel account: data offsets + A_DATA.
.equ CHANNEL_LEN, 256
.equ CH_DISC, 88
.equ CH_PAYER, 96
.equ CH_AUTH, 128
.equ CH_MAINT, 160
.equ CH_MINT, 192
.equ CH_VAULT, 224
.equ CH_BUMP, 256
.equ CH_STATE, 257
.equ CH_SEQ, 264
.equ CH_ALLOC, 272
.equ CH_VOUCHER, 280
.equ CH_ROOT, 288
.equ CH_WITHDRAWN, 320
.equ CH_CLOSE_AT, 328
.equ CH_GRACE, 336

# Claim account: data offsets + A_DATA.
.equ CLAIM_LEN, 112
.equ CL_DISC, 88
.equ CL_CHANNEL, 96
.equ CL_CLAIMANT, 128
.equ CL_RENT_PAYER, 160
.equ CL_WITHDRAWN, 192

# SPL token account (165 bytes): data offsets + A_DATA.
.equ TOKEN_ACCOUNT_LEN, 165
.equ T_MINT, 88
.equ T_OWNER, 120
.equ T_AMOUNT, 152
.equ T_DELEGATE, 160
.equ T_STATE, 196
.equ T_CLOSE_AUTH, 217

# Task escrow account: data offsets + A_DATA. The bump sits where a channel's does, so the vault
# helpers (vault_pda, pay_from_vault, close_vault) serve both.
.equ ESCROW_LEN, 272
.equ ES_DISC, 88
.equ ES_BUYER, 96
.equ ES_VALIDATOR, 128
.equ ES_MINT, 160
.equ ES_VAULT, 192
.equ ES_CREATOR, 224
.equ ES_BUMP, 256
.equ ES_STATE, 257
.equ ES_DEADLINE, 264
.equ ES_AMOUNT, 272
.equ ES_CREATOR_AMT, 280
.equ ES_GATEWAY_AMT, 288
.equ ES_GATEWAY, 296
.equ ES_RENT_PAYER, 328
.equ MAX_WORKERS, 8

.equ STATE_OPEN, 0
.equ STATE_CLOSING, 1
.equ STATE_CLOSED, 2

# Errors (Custom(N)); src/lib.rs `ProgramError` mirrors them.
.equ E_INSTRUCTION, 1
.equ E_ACCOUNTS, 2
.equ E_OWNER, 3
.equ E_SIGNER, 4
.equ E_CHANNEL, 5
.equ E_MINT, 6
.equ E_VAULT, 7
.equ E_PDA, 8
.equ E_SEQUENCE, 9
.equ E_ABOVE_VOUCHER, 10
.equ E_ABOVE_VAULT, 11
.equ E_VOUCHER_SIG, 12
.equ E_ROOT_SIG, 13
.equ E_PROOF, 14
.equ E_NOTHING_DUE, 15
.equ E_GRACE, 16
.equ E_CLOSED, 17
.equ E_HOLDS_FUNDS, 18
.equ E_TOTAL_DECREASED, 19
.equ E_ACCOUNT, 20
.equ E_WRITABLE, 21
.equ E_NOT_CLOSING, 22
.equ E_NOT_CLOSED, 23
.equ E_ABOVE_ALLOCATION, 24
.equ E_ESCROW, 25
.equ E_RELEASE_SIG, 26
.equ E_DEADLINE_PASSED, 27
.equ E_BEFORE_DEADLINE, 28
.equ E_SPLIT, 29
.equ E_UNDERFUNDED, 30

.rodata
  token_id: .byte 0x06, 0xdd, 0xf6, 0xe1, 0xd7, 0x65, 0xa1, 0x93, 0xd9, 0xcb, 0xe1, 0x46, 0xce, 0xeb, 0x79, 0xac, 0x1c, 0xb4, 0x85, 0xed, 0x5f, 0x5b, 0x37, 0x91, 0x3a, 0x8c, 0xf5, 0x85, 0x7e, 0xff, 0x00, 0xa9
  ix_sysvar_id: .byte 0x06, 0xa7, 0xd5, 0x17, 0x18, 0x7b, 0xd1, 0x66, 0x35, 0xda, 0xd4, 0x04, 0x55, 0xfd, 0xc2, 0xc0, 0xc1, 0x24, 0xc6, 0x8f, 0x21, 0x56, 0x75, 0xa5, 0xdb, 0xba, 0xcb, 0x5f, 0x08, 0x00, 0x00, 0x00
  ed25519_id: .byte 0x03, 0x7d, 0x46, 0xd6, 0x7c, 0x93, 0xfb, 0xbe, 0x12, 0xf9, 0x42, 0x8f, 0x83, 0x8d, 0x40, 0xff, 0x05, 0x70, 0x74, 0x49, 0x27, 0xf4, 0x8a, 0x64, 0xfc, 0xca, 0x70, 0x44, 0x80, 0x00, 0x00, 0x00
  system_id: .byte 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
  seed_vault: .ascii "vault"
  seed_claim: .ascii "claim"
  leaf_prefix: .byte 0
  node_prefix: .byte 1

.text
.globl entrypoint
entrypoint:
  lddw r9, HEAP
  ldxdw r2, [r1+0]
  jgt r2, MAX_ACCOUNTS, e_accounts
  stxdw [r9+H_NACC], r2
  mov64 r3, r1
  add64 r3, 8
  mov64 r4, 0
parse_loop:
  jge r4, r2, parse_done
  mov64 r5, r4
  lsh64 r5, 3
  add64 r5, r9
  ldxb r0, [r3+0]
  jne r0, 0xff, parse_dup
  stxdw [r5+0], r3
  ldxdw r0, [r3+A_DLEN]
  add64 r3, r0
  add64 r3, 10335
  and64 r3, -8
  add64 r3, 8
  add64 r4, 1
  ja parse_loop
parse_dup:
  lsh64 r0, 3
  add64 r0, r9
  ldxdw r0, [r0+0]
  stxdw [r5+0], r0
  add64 r3, 8
  add64 r4, 1
  ja parse_loop
parse_done:
  ldxdw r2, [r3+0]
  stxdw [r9+H_IXLEN], r2
  add64 r3, 8
  stxdw [r9+H_IX], r3
  add64 r3, r2
  stxdw [r9+H_PROG], r3
  jlt r2, 8, e_instruction
  ldxdw r6, [r9+H_IX]
  ldxb r2, [r6+0]
  jeq r2, 0, ix_open
  jeq r2, 1, ix_publish
  jeq r2, 2, ix_withdraw
  jeq r2, 3, ix_request_close
  jeq r2, 4, ix_close
  jeq r2, 5, ix_reclaim_claim
  jeq r2, 6, ix_reclaim_channel
  jeq r2, 7, ix_escrow_open
  jeq r2, 8, ix_escrow_release
  jeq r2, 9, ix_escrow_refund
  ja e_instruction

# ---------------------------------------------------------------------------------------------
# 0 Open. Accounts: channel (w, owned by this program, 256 zero bytes), payer (s), vault (an
# initialised token account of `mint` owned by PDA("vault", channel, bump), no delegate, no close
# authority), authority, maintainer, mint. Data: [0]=0, [1]=vault bump, [8..16]=grace seconds.
ix_open:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 6, e_accounts
  ldxdw r2, [r9+H_IXLEN]
  jlt r2, 16, e_instruction
  ldxdw r6, [r9+0]
  mov64 r1, r6
  add64 r1, A_OWNER
  ldxdw r2, [r9+H_PROG]
  call key_eq
  jeq r0, 0, e_owner
  ldxdw r2, [r6+A_DLEN]
  jne r2, CHANNEL_LEN, e_channel
  ldxb r2, [r6+A_WRITABLE]
  jeq r2, 0, e_writable
  ldxdw r2, [r6+CH_DISC]
  jne r2, 0, e_channel
  ldxdw r7, [r9+8]
  ldxb r2, [r7+A_SIGNER]
  jeq r2, 0, e_signer
  # the mint is a token-program account
  ldxdw r8, [r9+40]
  mov64 r1, r8
  add64 r1, A_OWNER
  lddw r2, token_id
  call key_eq
  jeq r0, 0, e_owner
  # the vault: a token account of that mint, held by the channel's vault PDA, nobody else's
  ldxdw r1, [r9+16]
  mov64 r2, r8
  add64 r2, A_KEY
  call check_token_account
  jne r0, 0, fail
  ldxdw r1, [r9+16]
  ldxw r2, [r1+T_DELEGATE]
  jne r2, 0, e_vault
  ldxw r2, [r1+T_CLOSE_AUTH]
  jne r2, 0, e_vault
  ldxdw r1, [r9+H_IX]
  add64 r1, 1
  call vault_pda
  jne r0, 0, e_pda
  ldxdw r1, [r9+16]
  add64 r1, T_OWNER
  mov64 r2, r9
  add64 r2, H_PDA
  call key_eq
  jeq r0, 0, e_vault
  # record the channel
  lddw r2, 0x6e61686332303464
  stxdw [r6+CH_DISC], r2
  mov64 r1, r6
  add64 r1, CH_PAYER
  mov64 r2, r7
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, CH_AUTH
  ldxdw r2, [r9+24]
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, CH_MAINT
  ldxdw r2, [r9+32]
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, CH_MINT
  mov64 r2, r8
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, CH_VAULT
  ldxdw r2, [r9+16]
  add64 r2, A_KEY
  call copy32
  ldxdw r1, [r9+H_IX]
  ldxb r2, [r1+1]
  stxb [r6+CH_BUMP], r2
  ldxdw r2, [r1+8]
  stxdw [r6+CH_GRACE], r2
  mov64 r0, 0
  exit

# ---------------------------------------------------------------------------------------------
# 1 PublishRoot. Accounts: channel (w), vault, instructions sysvar. Data: [0]=1, [8]=seq,
# [16]=total, [24]=voucher amount, [32..64]=root. The instruction before this one must be the
# Ed25519 precompile with two signatures over this instruction's own data: the payer's voucher
# "d402vch1" || channel || amount, then the authority's root "d402root" || channel || seq || total
# || root. Anyone may submit (the maintainer does): the signatures are the authorisation.
ix_publish:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 3, e_accounts
  ldxdw r2, [r9+H_IXLEN]
  jlt r2, 64, e_instruction
  ldxdw r1, [r9+0]
  call check_channel
  jne r0, 0, fail
  ldxdw r6, [r9+0]
  ldxb r2, [r6+CH_STATE]
  jeq r2, STATE_CLOSED, e_closed
  ldxdw r7, [r9+8]
  mov64 r1, r7
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, CH_VAULT
  call key_eq
  jeq r0, 0, e_vault
  ldxdw r1, [r9+16]
  add64 r1, A_KEY
  lddw r2, ix_sysvar_id
  call key_eq
  jeq r0, 0, e_account
  ldxdw r8, [r9+H_IX]
  ldxdw r2, [r8+8]
  ldxdw r3, [r6+CH_SEQ]
  jle r2, r3, e_sequence
  ldxdw r2, [r8+16]
  ldxdw r3, [r6+CH_ALLOC]
  jlt r2, r3, e_total_decreased
  ldxdw r3, [r8+24]
  jgt r2, r3, e_above_voucher
  ldxdw r3, [r7+T_AMOUNT]
  ldxdw r4, [r6+CH_WITHDRAWN]
  add64 r3, r4
  jgt r2, r3, e_above_vault
  # the expected messages
  mov64 r7, r9
  add64 r7, H_MSG1
  lddw r2, 0x3168637632303464
  stxdw [r7+0], r2
  mov64 r1, r7
  add64 r1, 8
  mov64 r2, r6
  add64 r2, A_KEY
  call copy32
  ldxdw r2, [r8+24]
  stxdw [r7+40], r2
  mov64 r7, r9
  add64 r7, H_MSG2
  lddw r2, 0x746f6f7232303464
  stxdw [r7+0], r2
  mov64 r1, r7
  add64 r1, 8
  mov64 r2, r6
  add64 r2, A_KEY
  call copy32
  ldxdw r2, [r8+8]
  stxdw [r7+40], r2
  ldxdw r2, [r8+16]
  stxdw [r7+48], r2
  mov64 r1, r7
  add64 r1, 56
  mov64 r2, r8
  add64 r2, 32
  call copy32
  # what each signature must be
  mov64 r2, r6
  add64 r2, CH_PAYER
  stxdw [r9+H_EXP], r2
  mov64 r2, r9
  add64 r2, H_MSG1
  stxdw [r9+456], r2
  mov64 r2, 48
  stxdw [r9+464], r2
  mov64 r2, r6
  add64 r2, CH_AUTH
  stxdw [r9+472], r2
  mov64 r2, r9
  add64 r2, H_MSG2
  stxdw [r9+480], r2
  mov64 r2, 88
  stxdw [r9+488], r2
  ldxdw r1, [r9+16]
  call verify_signatures
  jne r0, 0, fail
  # record
  ldxdw r2, [r8+8]
  stxdw [r6+CH_SEQ], r2
  ldxdw r2, [r8+16]
  stxdw [r6+CH_ALLOC], r2
  ldxdw r2, [r8+24]
  ldxdw r3, [r6+CH_VOUCHER]
  jle r2, r3, publish_voucher_kept
  stxdw [r6+CH_VOUCHER], r2
publish_voucher_kept:
  mov64 r1, r6
  add64 r1, CH_ROOT
  mov64 r2, r8
  add64 r2, 32
  call copy32
  mov64 r0, 0
  exit

# ---------------------------------------------------------------------------------------------
# 2 Withdraw. Accounts: channel (w), vault (w), claim (w, PDA("claim", channel, claimant, bump)),
# destination (w, a token account of the channel's mint; its owner is the claimant), fee payer (s,
# w: pays the claim's rent the first time), vault authority (the vault PDA), token program, system
# program. Data: [0]=2, [1]=claim bump, [2]=proof length n <= 32, [4..8]=proof sides (bit i set:
# node i is on the left), [8..16]=cumulative amount, [16..24]=lamports for the claim's rent (used
# only when the claim is created), [24..24+32n]=proof. Pays the claimant its
# cumulative amount under the current root minus what its claim records as withdrawn. The bump
# byte is ignored: the claim's address is the canonical PDA.
ix_withdraw:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 8, e_accounts
  ldxdw r1, [r9+0]
  call check_channel
  jne r0, 0, fail
  ldxdw r6, [r9+0]
  ldxdw r7, [r9+8]
  mov64 r1, r7
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, CH_VAULT
  call key_eq
  jeq r0, 0, e_vault
  ldxdw r1, [r9+24]
  mov64 r2, r6
  add64 r2, CH_MINT
  call check_token_account
  jne r0, 0, fail
  # the claimant's leaf must be under the root
  ldxdw r1, [r9+24]
  add64 r1, T_OWNER
  mov64 r2, r6
  add64 r2, CH_ROOT
  call verify_proof
  jne r0, 0, fail
  # the claim PDA
  ldxdw r8, [r9+H_IX]
  ldxdw r2, [r9+24]
  add64 r2, T_OWNER
  call claim_pda
  jne r0, 0, e_pda
  ldxdw r1, [r9+16]
  add64 r1, A_KEY
  mov64 r2, r9
  add64 r2, H_PDA
  call key_eq
  jeq r0, 0, e_pda
  ldxdw r1, [r9+16]
  add64 r1, A_OWNER
  ldxdw r2, [r9+H_PROG]
  call key_eq
  jne r0, 0, withdraw_claim_exists
  call create_claim
  jne r0, 0, fail
withdraw_claim_exists:
  ldxdw r1, [r9+16]
  ldxdw r2, [r9+24]
  add64 r2, T_OWNER
  call check_claim
  jne r0, 0, fail
  ldxdw r1, [r9+16]
  ldxdw r2, [r1+CL_WITHDRAWN]
  ldxdw r3, [r8+8]
  jle r3, r2, e_nothing_due
  sub64 r3, r2
  # never more than the root allocated in all and not yet withdrawn: the leaves are only the
  # authority's word, and a claim reclaimed after the close must not pay out a second time
  ldxdw r4, [r6+CH_ALLOC]
  ldxdw r5, [r6+CH_WITHDRAWN]
  sub64 r4, r5
  jgt r3, r4, e_above_allocation
  # pay r3 from the vault to the destination, signed by the vault PDA
  ldxdw r1, [r9+24]
  call pay_from_vault
  jne r0, 0, fail
  ldxdw r1, [r9+16]
  ldxdw r2, [r1+CL_WITHDRAWN]
  ldxdw r3, [r8+8]
  stxdw [r1+CL_WITHDRAWN], r3
  sub64 r3, r2
  ldxdw r2, [r6+CH_WITHDRAWN]
  add64 r2, r3
  stxdw [r6+CH_WITHDRAWN], r2
  mov64 r0, 0
  exit

# ---------------------------------------------------------------------------------------------
# 3 RequestClose. Accounts: channel (w), the payer or the authority (s). Starts the grace period;
# roots may still be published until Close. Idempotent while closing.
ix_request_close:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 2, e_accounts
  ldxdw r1, [r9+0]
  call check_channel
  jne r0, 0, fail
  ldxdw r6, [r9+0]
  ldxdw r7, [r9+8]
  ldxb r2, [r7+A_SIGNER]
  jeq r2, 0, e_signer
  mov64 r1, r7
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, CH_PAYER
  call key_eq
  jne r0, 0, request_close_ok
  mov64 r1, r7
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, CH_AUTH
  call key_eq
  jeq r0, 0, e_signer
request_close_ok:
  ldxb r2, [r6+CH_STATE]
  jeq r2, STATE_CLOSED, e_closed
  jeq r2, STATE_CLOSING, ok
  mov64 r1, r9
  add64 r1, H_CLOCK
  call sol_get_clock_sysvar
  ldxdw r2, [r9+808]
  stxdw [r6+CH_CLOSE_AT], r2
  mov64 r2, STATE_CLOSING
  stxb [r6+CH_STATE], r2
  ja ok

# ---------------------------------------------------------------------------------------------
# 4 Close. Accounts: channel (w), vault (w), the payer's token account (w), vault authority,
# token program. After the grace period, returns what no root allocated to the payer. Anyone may
# crank it; the money can only go to the payer.
ix_close:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 5, e_accounts
  ldxdw r1, [r9+0]
  call check_channel
  jne r0, 0, fail
  ldxdw r6, [r9+0]
  ldxb r2, [r6+CH_STATE]
  jne r2, STATE_CLOSING, e_not_closing
  mov64 r1, r9
  add64 r1, H_CLOCK
  call sol_get_clock_sysvar
  ldxdw r2, [r9+808]
  ldxdw r3, [r6+CH_CLOSE_AT]
  ldxdw r4, [r6+CH_GRACE]
  add64 r3, r4
  jslt r2, r3, e_grace
  ldxdw r7, [r9+8]
  mov64 r1, r7
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, CH_VAULT
  call key_eq
  jeq r0, 0, e_vault
  ldxdw r1, [r9+16]
  mov64 r2, r6
  add64 r2, CH_MINT
  call check_token_account
  jne r0, 0, fail
  ldxdw r1, [r9+16]
  add64 r1, T_OWNER
  mov64 r2, r6
  add64 r2, CH_PAYER
  call key_eq
  jeq r0, 0, e_account
  # remainder = vault - (allocated - withdrawn)
  ldxdw r3, [r7+T_AMOUNT]
  ldxdw r4, [r6+CH_ALLOC]
  ldxdw r5, [r6+CH_WITHDRAWN]
  sub64 r4, r5
  mov64 r2, STATE_CLOSED
  stxb [r6+CH_STATE], r2
  jle r3, r4, ok
  sub64 r3, r4
  # the vault authority is account 3 here, the token program account 4
  ldxdw r2, [r9+24]
  stxdw [r9+40], r2
  ldxdw r2, [r9+32]
  stxdw [r9+48], r2
  ldxdw r1, [r9+16]
  call pay_from_vault
  jne r0, 0, fail
  ja ok

# ---------------------------------------------------------------------------------------------
# 5 ReclaimClaim. Accounts: channel, claim (w), the claim's rent payer (w). Data as Withdraw's
# (the bump byte unused): a proof that the claimant's final amount is what it has withdrawn.
# Only once the channel is closed; returns the claim's rent.
ix_reclaim_claim:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 3, e_accounts
  ldxdw r1, [r9+0]
  call check_channel_ro
  jne r0, 0, fail
  ldxdw r6, [r9+0]
  ldxb r2, [r6+CH_STATE]
  jne r2, STATE_CLOSED, e_not_closed
  # only once every allocated unit was withdrawn (a withdrawal re-creating the claim then finds
  # nothing left to take)
  ldxdw r2, [r6+CH_ALLOC]
  ldxdw r3, [r6+CH_WITHDRAWN]
  jne r2, r3, e_holds_funds
  ldxdw r7, [r9+8]
  mov64 r1, r7
  mov64 r2, r7
  add64 r2, CL_CLAIMANT
  call check_claim
  jne r0, 0, fail
  ldxdw r1, [r9+16]
  add64 r1, A_KEY
  mov64 r2, r7
  add64 r2, CL_RENT_PAYER
  call key_eq
  jeq r0, 0, e_account
  mov64 r1, r7
  add64 r1, CL_CLAIMANT
  mov64 r2, r6
  add64 r2, CH_ROOT
  call verify_proof
  jne r0, 0, fail
  ldxdw r8, [r9+H_IX]
  ldxdw r2, [r8+8]
  ldxdw r3, [r7+CL_WITHDRAWN]
  jne r2, r3, e_holds_funds
  ldxdw r1, [r9+16]
  mov64 r2, r7
  call move_lamports
  ja ok

# ---------------------------------------------------------------------------------------------
# 6 ReclaimChannel. Accounts: channel (w), vault (w), the authority's wallet (w), vault
# authority, token program. Once closed and the vault is empty: closes the vault and the channel,
# their rent to the authority (the gateway, whose fee payer funded both at the opening: returned
# to the payer, the rent would be a gift to anyone opening and closing channels).
ix_reclaim_channel:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 5, e_accounts
  ldxdw r1, [r9+0]
  call check_channel
  jne r0, 0, fail
  ldxdw r6, [r9+0]
  ldxb r2, [r6+CH_STATE]
  jne r2, STATE_CLOSED, e_not_closed
  ldxdw r7, [r9+8]
  mov64 r1, r7
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, CH_VAULT
  call key_eq
  jeq r0, 0, e_vault
  ldxdw r2, [r7+T_AMOUNT]
  jne r2, 0, e_holds_funds
  ldxdw r1, [r9+16]
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, CH_AUTH
  call key_eq
  jeq r0, 0, e_account
  ldxdw r1, [r9+24]
  add64 r1, A_KEY
  mov64 r2, r7
  add64 r2, T_OWNER
  call key_eq
  jeq r0, 0, e_vault
  ldxdw r1, [r9+32]
  add64 r1, A_KEY
  lddw r2, token_id
  call key_eq
  jeq r0, 0, e_account
  # CloseAccount(vault -> authority), signed by the vault PDA: close_vault wants the PDA as
  # account 5 and the token program as account 6
  ldxdw r2, [r9+32]
  stxdw [r9+48], r2
  ldxdw r2, [r9+24]
  stxdw [r9+40], r2
  ldxdw r1, [r9+16]
  call close_vault
  jne r0, 0, fail
  ldxdw r1, [r9+16]
  mov64 r2, r6
  call move_lamports
  ja ok

# ---------------------------------------------------------------------------------------------
# 7 EscrowOpen. Accounts: escrow (w, owned by this program, ESCROW_LEN zero bytes), buyer (s),
# vault (a token account of `mint` held by PDA("vault", escrow, bump), no delegate, no close
# authority, holding at least `amount`), validator, mint, creator token account, gateway token
# account (both of `mint`, neither the vault PDA's), rent payer (s: it funded the escrow and the
# vault and gets their rent back). Data: [0]=7, [1]=vault bump, [8]=deadline (unix seconds),
# [16]=amount, [24]=creator amount, [32]=gateway amount. Fund the vault in the same transaction,
# before this instruction: the escrow opens only over money already held.
ix_escrow_open:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 8, e_accounts
  ldxdw r2, [r9+H_IXLEN]
  jlt r2, 40, e_instruction
  ldxdw r6, [r9+0]
  mov64 r1, r6
  add64 r1, A_OWNER
  ldxdw r2, [r9+H_PROG]
  call key_eq
  jeq r0, 0, e_owner
  ldxdw r2, [r6+A_DLEN]
  jne r2, ESCROW_LEN, e_escrow
  ldxb r2, [r6+A_WRITABLE]
  jeq r2, 0, e_writable
  ldxdw r2, [r6+ES_DISC]
  jne r2, 0, e_escrow
  ldxdw r7, [r9+8]
  ldxb r2, [r7+A_SIGNER]
  jeq r2, 0, e_signer
  ldxdw r2, [r9+56]
  ldxb r2, [r2+A_SIGNER]
  jeq r2, 0, e_signer
  # the split fits the amount
  ldxdw r8, [r9+H_IX]
  ldxdw r2, [r8+16]
  jeq r2, 0, e_split
  ldxdw r3, [r8+24]
  jgt r3, r2, e_split
  sub64 r2, r3
  ldxdw r3, [r8+32]
  jgt r3, r2, e_split
  # the mint is a token-program account
  ldxdw r1, [r9+32]
  add64 r1, A_OWNER
  lddw r2, token_id
  call key_eq
  jeq r0, 0, e_owner
  # the vault: a token account of that mint, held by the escrow's vault PDA, funded
  ldxdw r1, [r9+16]
  ldxdw r2, [r9+32]
  add64 r2, A_KEY
  call check_token_account
  jne r0, 0, fail
  ldxdw r1, [r9+16]
  ldxw r2, [r1+T_DELEGATE]
  jne r2, 0, e_vault
  ldxw r2, [r1+T_CLOSE_AUTH]
  jne r2, 0, e_vault
  ldxdw r2, [r1+T_AMOUNT]
  ldxdw r3, [r8+16]
  jlt r2, r3, e_underfunded
  mov64 r1, r8
  add64 r1, 1
  call vault_pda
  jne r0, 0, e_pda
  ldxdw r1, [r9+16]
  add64 r1, T_OWNER
  mov64 r2, r9
  add64 r2, H_PDA
  call key_eq
  jeq r0, 0, e_vault
  # where the creator's and the gateway's shares go
  ldxdw r1, [r9+40]
  ldxdw r2, [r9+32]
  add64 r2, A_KEY
  call check_token_account
  jne r0, 0, fail
  ldxdw r1, [r9+40]
  add64 r1, T_OWNER
  mov64 r2, r9
  add64 r2, H_PDA
  call key_eq
  jne r0, 0, e_account
  ldxdw r1, [r9+48]
  ldxdw r2, [r9+32]
  add64 r2, A_KEY
  call check_token_account
  jne r0, 0, fail
  ldxdw r1, [r9+48]
  add64 r1, T_OWNER
  mov64 r2, r9
  add64 r2, H_PDA
  call key_eq
  jne r0, 0, e_account
  # record the escrow
  lddw r2, 0x7263736532303464
  stxdw [r6+ES_DISC], r2
  mov64 r1, r6
  add64 r1, ES_BUYER
  ldxdw r2, [r9+8]
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, ES_VALIDATOR
  ldxdw r2, [r9+24]
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, ES_MINT
  ldxdw r2, [r9+32]
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, ES_VAULT
  ldxdw r2, [r9+16]
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, ES_CREATOR
  ldxdw r2, [r9+40]
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, ES_GATEWAY
  ldxdw r2, [r9+48]
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, ES_RENT_PAYER
  ldxdw r2, [r9+56]
  add64 r2, A_KEY
  call copy32
  ldxb r2, [r8+1]
  stxb [r6+ES_BUMP], r2
  ldxdw r2, [r8+8]
  stxdw [r6+ES_DEADLINE], r2
  ldxdw r2, [r8+16]
  stxdw [r6+ES_AMOUNT], r2
  ldxdw r2, [r8+24]
  stxdw [r6+ES_CREATOR_AMT], r2
  ldxdw r2, [r8+32]
  stxdw [r6+ES_GATEWAY_AMT], r2
  ja ok

# ---------------------------------------------------------------------------------------------
# 8 EscrowRelease. Accounts: escrow (w), vault (w), instructions sysvar, creator token (w), gateway
# token (w), vault authority, token program, rent payer (w), then 1..=8 worker token accounts (w)
# of the escrow's mint. Data: [0]=8. The instruction before this one must be the Ed25519
# precompile with exactly one signature, by the escrow's validator, over "d402rel1" || escrow ||
# the worker token accounts in order. Only before the deadline. Pays the workers' share (the
# vault's balance less the creator's and the gateway's amounts) in equal parts, the first worker
# taking what the division leaves, then the creator and the gateway; closes the vault and the
# escrow, their rent to the rent payer. Anyone may send it: the signature is the authorisation.
ix_escrow_release:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 9, e_accounts
  ldxdw r1, [r9+0]
  call check_escrow
  jne r0, 0, fail
  ldxdw r6, [r9+0]
  mov64 r1, r9
  add64 r1, H_CLOCK
  call sol_get_clock_sysvar
  ldxdw r2, [r9+808]
  ldxdw r3, [r6+ES_DEADLINE]
  jsge r2, r3, e_deadline_passed
  ldxdw r1, [r9+16]
  add64 r1, A_KEY
  lddw r2, ix_sysvar_id
  call key_eq
  jeq r0, 0, e_account
  ldxdw r1, [r9+8]
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, ES_VAULT
  call key_eq
  jeq r0, 0, e_vault
  ldxdw r1, [r9+24]
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, ES_CREATOR
  call key_eq
  jeq r0, 0, e_account
  ldxdw r1, [r9+32]
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, ES_GATEWAY
  call key_eq
  jeq r0, 0, e_account
  ldxdw r1, [r9+56]
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, ES_RENT_PAYER
  call key_eq
  jeq r0, 0, e_account
  # the message the validator must have signed
  mov64 r7, r9
  add64 r7, H_REL
  lddw r2, 0x316c657232303464
  stxdw [r7+0], r2
  mov64 r1, r7
  add64 r1, 8
  mov64 r2, r6
  add64 r2, A_KEY
  call copy32
  ldxdw r8, [r9+H_NACC]
  sub64 r8, 8
  jgt r8, MAX_WORKERS, e_accounts
  mov64 r7, 0
release_message_loop:
  jge r7, r8, release_message_done
  mov64 r2, r7
  add64 r2, 8
  lsh64 r2, 3
  add64 r2, r9
  ldxdw r1, [r2+0]
  mov64 r2, r6
  add64 r2, ES_MINT
  call check_token_account
  jne r0, 0, fail
  mov64 r2, r7
  add64 r2, 8
  lsh64 r2, 3
  add64 r2, r9
  ldxdw r2, [r2+0]
  add64 r2, A_KEY
  mov64 r1, r7
  lsh64 r1, 5
  add64 r1, r9
  add64 r1, H_REL
  add64 r1, 40
  call copy32
  add64 r7, 1
  ja release_message_loop
release_message_done:
  mov64 r2, r6
  add64 r2, ES_VALIDATOR
  stxdw [r9+H_EXP], r2
  mov64 r2, r9
  add64 r2, H_REL
  stxdw [r9+456], r2
  mov64 r2, r8
  lsh64 r2, 5
  add64 r2, 40
  stxdw [r9+464], r2
  ldxdw r1, [r9+16]
  mov64 r2, 1
  call load_precompile
  jne r0, 0, e_release_sig
  ldxdw r1, [r9+H_PRE]
  ldxdw r2, [r9+H_PRELEN]
  mov64 r3, 0
  mov64 r4, r9
  add64 r4, H_EXP
  call check_signature
  jne r0, 0, e_release_sig
  # settled from here on: no second release or refund, even later in this transaction
  mov64 r2, STATE_CLOSED
  stxb [r6+ES_STATE], r2
  # r7 = the workers' total; [H_HASH] = each worker's share; the first takes the remainder
  ldxdw r2, [r9+8]
  ldxdw r7, [r2+T_AMOUNT]
  ldxdw r3, [r6+ES_CREATOR_AMT]
  sub64 r7, r3
  ldxdw r3, [r6+ES_GATEWAY_AMT]
  sub64 r7, r3
  mov64 r2, r7
  div64 r2, r8
  stxdw [r9+H_HASH], r2
  mov64 r3, r8
  sub64 r3, 1
  mul64 r3, r2
  sub64 r7, r3
  jeq r7, 0, release_first_paid
  ldxdw r1, [r9+64]
  mov64 r3, r7
  call pay_from_vault
  jne r0, 0, fail
release_first_paid:
  mov64 r7, 1
release_pay_loop:
  jge r7, r8, release_workers_paid
  ldxdw r3, [r9+H_HASH]
  jeq r3, 0, release_workers_paid
  mov64 r2, r7
  add64 r2, 8
  lsh64 r2, 3
  add64 r2, r9
  ldxdw r1, [r2+0]
  call pay_from_vault
  jne r0, 0, fail
  add64 r7, 1
  ja release_pay_loop
release_workers_paid:
  ldxdw r3, [r6+ES_CREATOR_AMT]
  jeq r3, 0, release_creator_paid
  ldxdw r1, [r9+24]
  call pay_from_vault
  jne r0, 0, fail
release_creator_paid:
  ldxdw r3, [r6+ES_GATEWAY_AMT]
  jeq r3, 0, escrow_close
  ldxdw r1, [r9+32]
  call pay_from_vault
  jne r0, 0, fail
  ja escrow_close

# ---------------------------------------------------------------------------------------------
# 9 EscrowRefund. Accounts: escrow (w), vault (w), buyer token (w: a token account of the mint
# owned by the buyer), rent payer (w), vault authority, token program. Data: [0]=9. At or after the
# deadline by the chain's clock; anyone may send it. The vault's whole balance goes to the buyer;
# the vault and the escrow are closed, their rent to the rent payer.
ix_escrow_refund:
  ldxdw r2, [r9+H_NACC]
  jlt r2, 6, e_accounts
  ldxdw r1, [r9+0]
  call check_escrow
  jne r0, 0, fail
  ldxdw r6, [r9+0]
  mov64 r1, r9
  add64 r1, H_CLOCK
  call sol_get_clock_sysvar
  ldxdw r2, [r9+808]
  ldxdw r3, [r6+ES_DEADLINE]
  jslt r2, r3, e_before_deadline
  ldxdw r1, [r9+8]
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, ES_VAULT
  call key_eq
  jeq r0, 0, e_vault
  ldxdw r1, [r9+16]
  mov64 r2, r6
  add64 r2, ES_MINT
  call check_token_account
  jne r0, 0, fail
  ldxdw r1, [r9+16]
  add64 r1, T_OWNER
  mov64 r2, r6
  add64 r2, ES_BUYER
  call key_eq
  jeq r0, 0, e_account
  ldxdw r1, [r9+24]
  add64 r1, A_KEY
  mov64 r2, r6
  add64 r2, ES_RENT_PAYER
  call key_eq
  jeq r0, 0, e_account
  # pay_from_vault and close_vault want the rent payer as account 7, the PDA as 5, the token
  # program as 6
  ldxdw r2, [r9+24]
  stxdw [r9+56], r2
  ldxdw r2, [r9+40]
  stxdw [r9+48], r2
  ldxdw r2, [r9+32]
  stxdw [r9+40], r2
  mov64 r2, STATE_CLOSED
  stxb [r6+ES_STATE], r2
  ldxdw r2, [r9+8]
  ldxdw r3, [r2+T_AMOUNT]
  jeq r3, 0, escrow_close
  ldxdw r1, [r9+16]
  call pay_from_vault
  jne r0, 0, fail
# the vault (now empty) and the escrow closed, their rent to the rent payer (account 7)
escrow_close:
  ldxdw r1, [r9+56]
  call close_vault
  jne r0, 0, fail
  ldxdw r1, [r9+56]
  mov64 r2, r6
  call move_lamports
  ja ok

ok:
  mov64 r0, 0
  exit
fail:
  exit
e_instruction:
  mov64 r0, E_INSTRUCTION
  exit
e_accounts:
  mov64 r0, E_ACCOUNTS
  exit
e_owner:
  mov64 r0, E_OWNER
  exit
e_signer:
  mov64 r0, E_SIGNER
  exit
e_channel:
  mov64 r0, E_CHANNEL
  exit
e_vault:
  mov64 r0, E_VAULT
  exit
e_pda:
  mov64 r0, E_PDA
  exit
e_sequence:
  mov64 r0, E_SEQUENCE
  exit
e_above_voucher:
  mov64 r0, E_ABOVE_VOUCHER
  exit
e_above_vault:
  mov64 r0, E_ABOVE_VAULT
  exit
e_nothing_due:
  mov64 r0, E_NOTHING_DUE
  exit
e_grace:
  mov64 r0, E_GRACE
  exit
e_closed:
  mov64 r0, E_CLOSED
  exit
e_holds_funds:
  mov64 r0, E_HOLDS_FUNDS
  exit
e_total_decreased:
  mov64 r0, E_TOTAL_DECREASED
  exit
e_account:
  mov64 r0, E_ACCOUNT
  exit
e_writable:
  mov64 r0, E_WRITABLE
  exit
e_not_closing:
  mov64 r0, E_NOT_CLOSING
  exit
e_not_closed:
  mov64 r0, E_NOT_CLOSED
  exit
e_mint:
  mov64 r0, E_MINT
  exit
e_proof:
  mov64 r0, E_PROOF
  exit
e_voucher_sig:
  mov64 r0, E_VOUCHER_SIG
  exit
e_root_sig:
  mov64 r0, E_ROOT_SIG
  exit
e_above_allocation:
  mov64 r0, E_ABOVE_ALLOCATION
  exit
e_escrow:
  mov64 r0, E_ESCROW
  exit
e_release_sig:
  mov64 r0, E_RELEASE_SIG
  exit
e_deadline_passed:
  mov64 r0, E_DEADLINE_PASSED
  exit
e_before_deadline:
  mov64 r0, E_BEFORE_DEADLINE
  exit
e_split:
  mov64 r0, E_SPLIT
  exit
e_underfunded:
  mov64 r0, E_UNDERFUNDED
  exit

# =============================================================================================
# Helpers. Each returns r0 = 0 on success or an error code (or, for key_eq, 1 = equal). A helper
# fails by jumping to the e_* exits above: `exit` returns from the current frame, so the same
# two instructions end the program from a handler and return the code from a helper.

# key_eq(r1, r2): r0 = 1 when the 32 bytes at r1 and r2 are equal.
key_eq:
  ldxdw r3, [r1+0]
  ldxdw r4, [r2+0]
  jne r3, r4, key_ne
  ldxdw r3, [r1+8]
  ldxdw r4, [r2+8]
  jne r3, r4, key_ne
  ldxdw r3, [r1+16]
  ldxdw r4, [r2+16]
  jne r3, r4, key_ne
  ldxdw r3, [r1+24]
  ldxdw r4, [r2+24]
  jne r3, r4, key_ne
  mov64 r0, 1
  exit
key_ne:
  mov64 r0, 0
  exit

# copy32(r1 = dst, r2 = src)
copy32:
  ldxdw r3, [r2+0]
  stxdw [r1+0], r3
  ldxdw r3, [r2+8]
  stxdw [r1+8], r3
  ldxdw r3, [r2+16]
  stxdw [r1+16], r3
  ldxdw r3, [r2+24]
  stxdw [r1+24], r3
  mov64 r0, 0
  exit

# check_channel(r1 = account): an open-format channel of this program, writable.
check_channel:
  ldxb r2, [r1+A_WRITABLE]
  jeq r2, 0, e_writable
# check_channel_ro(r1 = account): the same without the writable check.
check_channel_ro:
  mov64 r6, r1
  add64 r1, A_OWNER
  lddw r2, HEAP
  ldxdw r2, [r2+H_PROG]
  call key_eq
  jeq r0, 0, e_owner
  ldxdw r2, [r6+A_DLEN]
  jne r2, CHANNEL_LEN, e_channel
  ldxdw r2, [r6+CH_DISC]
  lddw r3, 0x6e61686332303464
  jne r2, r3, e_channel
  mov64 r0, 0
  exit

# check_escrow(r1 = account): an open task escrow of this program, writable.
check_escrow:
  mov64 r6, r1
  ldxb r2, [r1+A_WRITABLE]
  jeq r2, 0, e_writable
  add64 r1, A_OWNER
  lddw r2, HEAP
  ldxdw r2, [r2+H_PROG]
  call key_eq
  jeq r0, 0, e_owner
  ldxdw r2, [r6+A_DLEN]
  jne r2, ESCROW_LEN, e_escrow
  ldxdw r2, [r6+ES_DISC]
  lddw r3, 0x7263736532303464
  jne r2, r3, e_escrow
  ldxb r2, [r6+ES_STATE]
  jne r2, STATE_OPEN, e_escrow
  mov64 r0, 0
  exit

# check_claim(r1 = claim account, r2 = claimant key ptr): a claim of this program for account 0's
# channel and that claimant.
check_claim:
  mov64 r6, r1
  mov64 r7, r2
  add64 r1, A_OWNER
  lddw r2, HEAP
  ldxdw r2, [r2+H_PROG]
  call key_eq
  jeq r0, 0, e_owner
  ldxdw r2, [r6+A_DLEN]
  jne r2, CLAIM_LEN, e_account
  ldxdw r2, [r6+CL_DISC]
  lddw r3, 0x316d6c6332303464
  jne r2, r3, e_account
  mov64 r1, r6
  add64 r1, CL_CHANNEL
  lddw r2, HEAP
  ldxdw r2, [r2+0]
  add64 r2, A_KEY
  call key_eq
  jeq r0, 0, e_account
  mov64 r1, r6
  add64 r1, CL_CLAIMANT
  mov64 r2, r7
  call key_eq
  jeq r0, 0, e_account
  mov64 r0, 0
  exit

# check_token_account(r1 = account, r2 = mint key ptr): an initialised SPL token account of that
# mint.
check_token_account:
  mov64 r6, r1
  mov64 r7, r2
  add64 r1, A_OWNER
  lddw r2, token_id
  call key_eq
  jeq r0, 0, e_owner
  ldxdw r2, [r6+A_DLEN]
  jne r2, TOKEN_ACCOUNT_LEN, e_account
  ldxb r2, [r6+T_STATE]
  jne r2, 1, e_account
  mov64 r1, r6
  add64 r1, T_MINT
  mov64 r2, r7
  call key_eq
  jeq r0, 0, e_mint
  mov64 r0, 0
  exit

# vault_pda(r1 = bump byte ptr): H_PDA = create_program_address(["vault", channel, bump]).
vault_pda:
  lddw r9, HEAP
  lddw r2, seed_vault
  stxdw [r9+H_SEEDS], r2
  mov64 r2, 5
  stxdw [r9+648], r2
  ldxdw r2, [r9+0]
  add64 r2, A_KEY
  stxdw [r9+656], r2
  mov64 r2, 32
  stxdw [r9+664], r2
  stxdw [r9+672], r1
  mov64 r2, 1
  stxdw [r9+680], r2
  mov64 r1, r9
  add64 r1, H_SEEDS
  mov64 r2, 3
  ldxdw r3, [r9+H_PROG]
  mov64 r4, r9
  add64 r4, H_PDA
  call sol_create_program_address
  exit

# claim_pda(r2 = claimant key ptr): H_PDA and H_BUMP = the canonical (find_program_address)
# address of ["claim", channel, claimant]; the four signing seeds (with the bump) stay in H_SEEDS
# for create_claim. Canonical, so a claimant has exactly one claim per channel.
claim_pda:
  lddw r9, HEAP
  lddw r3, seed_claim
  stxdw [r9+H_SEEDS], r3
  mov64 r3, 5
  stxdw [r9+648], r3
  ldxdw r3, [r9+0]
  add64 r3, A_KEY
  stxdw [r9+656], r3
  mov64 r3, 32
  stxdw [r9+664], r3
  stxdw [r9+672], r2
  stxdw [r9+680], r3
  mov64 r3, r9
  add64 r3, H_BUMP
  stxdw [r9+688], r3
  mov64 r3, 1
  stxdw [r9+696], r3
  mov64 r1, r9
  add64 r1, H_SEEDS
  mov64 r2, 3
  ldxdw r3, [r9+H_PROG]
  mov64 r4, r9
  add64 r4, H_PDA
  mov64 r5, r9
  add64 r5, H_BUMP
  call sol_try_find_program_address
  exit

# verify_proof(r1 = claimant key ptr, r2 = root ptr): the leaf sha256(0 || claimant || amount)
# with the instruction's proof folds to the root. Instruction data as Withdraw's.
verify_proof:
  lddw r9, HEAP
  mov64 r7, r2
  ldxdw r8, [r9+H_IX]
  ldxb r6, [r8+2]
  jgt r6, 32, e_instruction
  mov64 r3, r6
  lsh64 r3, 5
  add64 r3, 24
  ldxdw r4, [r9+H_IXLEN]
  jgt r3, r4, e_instruction
  # leaf
  lddw r3, leaf_prefix
  stxdw [r9+H_SHA], r3
  mov64 r3, 1
  stxdw [r9+584], r3
  stxdw [r9+592], r1
  mov64 r3, 32
  stxdw [r9+600], r3
  mov64 r3, r8
  add64 r3, 8
  stxdw [r9+608], r3
  mov64 r3, 8
  stxdw [r9+616], r3
  mov64 r1, r9
  add64 r1, H_SHA
  mov64 r2, 3
  mov64 r3, r9
  add64 r3, H_HASH
  call sol_sha256
  # fold: r6 = nodes left, r8 = next node, bits in [ix+4]
  ldxw r5, [r8+4]
  stxdw [r9+H_CMP], r5
  add64 r8, 24
proof_loop:
  jeq r6, 0, proof_done
  lddw r3, node_prefix
  stxdw [r9+H_SHA], r3
  mov64 r3, 1
  stxdw [r9+584], r3
  mov64 r3, 32
  stxdw [r9+600], r3
  stxdw [r9+616], r3
  mov64 r3, r9
  add64 r3, H_HASH
  ldxdw r5, [r9+H_CMP]
  mov64 r4, r5
  and64 r4, 1
  rsh64 r5, 1
  stxdw [r9+H_CMP], r5
  jeq r4, 0, proof_right
  stxdw [r9+592], r8
  stxdw [r9+608], r3
  ja proof_hash
proof_right:
  stxdw [r9+592], r3
  stxdw [r9+608], r8
proof_hash:
  mov64 r1, r9
  add64 r1, H_SHA
  mov64 r2, 3
  mov64 r3, r9
  add64 r3, H_HASH2
  call sol_sha256
  mov64 r1, r9
  add64 r1, H_HASH
  mov64 r2, r9
  add64 r2, H_HASH2
  call copy32
  add64 r8, 32
  sub64 r6, 1
  ja proof_loop
proof_done:
  mov64 r1, r9
  add64 r1, H_HASH
  mov64 r2, r7
  call key_eq
  jeq r0, 0, e_proof
  mov64 r0, 0
  exit

# load_precompile(r1 = instructions sysvar account, r2 = signatures expected): the instruction
# before this one is the Ed25519 precompile carrying exactly r2 signatures; its data pointer and
# length are left at H_PRE and H_PRELEN. r0 = 0, or 1 when it is not.
load_precompile:
  lddw r9, HEAP
  stxdw [r9+H_PRELEN], r2
  mov64 r6, r1
  add64 r6, A_DATA
  ldxdw r7, [r1+A_DLEN]
  jlt r7, 4, sig_bad
  mov64 r2, r6
  add64 r2, r7
  ldxh r3, [r2-2]
  jeq r3, 0, sig_bad
  sub64 r3, 1
  ldxh r4, [r6+0]
  jge r3, r4, sig_bad
  lsh64 r3, 1
  add64 r3, r6
  ldxh r5, [r3+2]
  mov64 r8, r6
  add64 r8, r5
  ldxh r2, [r8+0]
  mul64 r2, 33
  add64 r8, r2
  add64 r8, 2
  mov64 r1, r8
  lddw r2, ed25519_id
  call key_eq
  jeq r0, 0, sig_bad
  add64 r8, 32
  ldxh r7, [r8+0]
  add64 r8, 2
  ldxb r2, [r8+0]
  ldxdw r3, [r9+H_PRELEN]
  jne r2, r3, sig_bad
  stxdw [r9+H_PRE], r8
  stxdw [r9+H_PRELEN], r7
  mov64 r0, 0
  exit

# verify_signatures(r1 = instructions sysvar account): the instruction before this one is the
# Ed25519 precompile with exactly two signatures, each over data inside itself, matching the
# (pubkey, message, length) triples at H_EXP.
verify_signatures:
  mov64 r2, 2
  call load_precompile
  jne r0, 0, e_voucher_sig
  lddw r9, HEAP
  ldxdw r1, [r9+H_PRE]
  ldxdw r2, [r9+H_PRELEN]
  mov64 r3, 0
  mov64 r4, r9
  add64 r4, H_EXP
  call check_signature
  jne r0, 0, e_voucher_sig
  ldxdw r1, [r9+H_PRE]
  ldxdw r2, [r9+H_PRELEN]
  mov64 r3, 1
  mov64 r4, r9
  add64 r4, 472
  call check_signature
  jne r0, 0, e_root_sig
  mov64 r0, 0
  exit

# check_signature(r1 = precompile data, r2 = its length, r3 = signature index, r4 = expected
# (pubkey ptr, message ptr, length)): r0 = 0 when signature r3 is over the expected message by
# the expected key, all within the precompile's own data.
check_signature:
  mov64 r6, r1
  mov64 r7, r2
  mov64 r8, r4
  mul64 r3, 14
  add64 r3, 2
  add64 r3, r1
  ldxh r0, [r3+2]
  jne r0, 0xffff, sig_bad
  ldxh r0, [r3+6]
  jne r0, 0xffff, sig_bad
  ldxh r0, [r3+12]
  jne r0, 0xffff, sig_bad
  ldxh r0, [r3+10]
  ldxdw r5, [r8+16]
  jne r0, r5, sig_bad
  ldxh r5, [r3+8]
  add64 r0, r5
  jgt r0, r7, sig_bad
  ldxh r4, [r3+4]
  mov64 r0, r4
  add64 r0, 32
  jgt r0, r7, sig_bad
  mov64 r9, r6
  add64 r9, r5
  mov64 r1, r6
  add64 r1, r4
  ldxdw r2, [r8+0]
  call key_eq
  jeq r0, 0, sig_bad
  mov64 r1, r9
  ldxdw r2, [r8+8]
  ldxdw r3, [r8+16]
  lddw r4, HEAP
  add64 r4, H_CMP
  call sol_memcmp_
  lddw r4, HEAP
  ldxw r0, [r4+H_CMP]
  jne r0, 0, sig_bad
  mov64 r0, 0
  exit
sig_bad:
  mov64 r0, 1
  exit

# fill_meta(r1 = account, r2 = SolAccountMeta, r3 = writable, r4 = signer)
fill_meta:
  add64 r1, A_KEY
  stxdw [r2+0], r1
  stxb [r2+8], r3
  stxb [r2+9], r4
  mov64 r0, 0
  exit

# fill_info(r1 = account, r2 = SolAccountInfo): the C ABI view of a serialized account.
fill_info:
  mov64 r3, r1
  add64 r3, A_KEY
  stxdw [r2+0], r3
  mov64 r3, r1
  add64 r3, A_LAMPORTS
  stxdw [r2+8], r3
  ldxdw r3, [r1+A_DLEN]
  stxdw [r2+16], r3
  mov64 r4, r1
  add64 r4, A_DATA
  stxdw [r2+24], r4
  mov64 r4, r1
  add64 r4, A_OWNER
  stxdw [r2+32], r4
  add64 r3, r1
  add64 r3, 10335
  and64 r3, -8
  ldxdw r4, [r3+0]
  stxdw [r2+40], r4
  ldxb r4, [r1+1]
  stxb [r2+48], r4
  ldxb r4, [r1+2]
  stxb [r2+49], r4
  ldxb r4, [r1+3]
  stxb [r2+50], r4
  mov64 r0, 0
  exit

# pay_from_vault(r1 = destination token account, r3 = amount): SPL Transfer from the vault
# (account 1) to r1, signed by the vault PDA (account 5), through the token program (account 6).
pay_from_vault:
  lddw r9, HEAP
  mov64 r2, 3
  stxb [r9+H_CPI_DATA], r2
  stxdw [r9+897], r3
  mov64 r2, 9
  call vault_cpi
  exit

# vault_cpi(r1 = the other account, r2 = data length): invokes the token program (account 6) on
# the vault (account 1, writable), r1 (writable) and the vault PDA (account 5, signing), with the
# instruction data already at H_CPI_DATA: a Transfer or a CloseAccount of the vault.
vault_cpi:
  lddw r9, HEAP
  mov64 r6, r1
  mov64 r7, r2
  ldxdw r1, [r9+40]
  add64 r1, A_KEY
  ldxdw r2, [r9+8]
  add64 r2, T_OWNER
  call key_eq
  jeq r0, 0, e_vault
  ldxdw r1, [r9+48]
  add64 r1, A_KEY
  lddw r2, token_id
  call key_eq
  jeq r0, 0, e_account
  ldxdw r1, [r9+8]
  mov64 r2, r9
  add64 r2, H_CPI_METAS
  mov64 r3, 1
  mov64 r4, 0
  call fill_meta
  mov64 r1, r6
  mov64 r2, r9
  add64 r2, 976
  mov64 r3, 1
  mov64 r4, 0
  call fill_meta
  ldxdw r1, [r9+40]
  mov64 r2, r9
  add64 r2, 992
  mov64 r3, 0
  mov64 r4, 1
  call fill_meta
  ldxdw r1, [r9+8]
  mov64 r2, r9
  add64 r2, H_CPI_INFOS
  call fill_info
  mov64 r1, r6
  mov64 r2, r9
  add64 r2, 1080
  call fill_info
  ldxdw r1, [r9+40]
  mov64 r2, r9
  add64 r2, 1136
  call fill_info
  mov64 r1, r7
  call invoke_token_signed_by_vault
  exit

# invoke_token_signed_by_vault(r1 = data length): invokes the token program with the three metas
# and infos prepared at H_CPI_*, signed by the channel's vault PDA.
invoke_token_signed_by_vault:
  lddw r9, HEAP
  mov64 r6, r1
  ldxdw r1, [r9+0]
  add64 r1, CH_BUMP
  call vault_pda
  jne r0, 0, e_pda
  lddw r2, token_id
  stxdw [r9+H_CPI_IX], r2
  mov64 r2, r9
  add64 r2, H_CPI_METAS
  stxdw [r9+864], r2
  mov64 r2, 3
  stxdw [r9+872], r2
  mov64 r2, r9
  add64 r2, H_CPI_DATA
  stxdw [r9+880], r2
  stxdw [r9+888], r6
  mov64 r2, r9
  add64 r2, H_SEEDS
  stxdw [r9+H_SIGNERS], r2
  mov64 r2, 3
  stxdw [r9+712], r2
  mov64 r1, r9
  add64 r1, H_CPI_IX
  mov64 r2, r9
  add64 r2, H_CPI_INFOS
  mov64 r3, 3
  mov64 r4, r9
  add64 r4, H_SIGNERS
  mov64 r5, 1
  call sol_invoke_signed_c
  exit

# close_vault(r1 = receiver account): SPL CloseAccount of the vault (account 1) to r1, signed by
# the vault PDA (account 5), through the token program (account 6). The vault must be empty.
close_vault:
  lddw r9, HEAP
  mov64 r2, 9
  stxb [r9+H_CPI_DATA], r2
  mov64 r2, 1
  call vault_cpi
  exit

# create_claim(): creates the claim account (account 2) at H_PDA, signed with the seeds claim_pda
# left in H_SEEDS, funded by the fee payer (account 4, with the lamports the data offers) through
# the system program (account 7), and records channel, claimant (account 3's owner) and rent
# payer. An address someone funded beforehand (a system account with lamports, which CreateAccount
# refuses) is adopted instead: topped up, allocated and assigned, so pre-funding a claimant's
# address cannot block its withdrawals.
create_claim:
  lddw r9, HEAP
  ldxdw r1, [r9+32]
  ldxb r2, [r1+A_SIGNER]
  jeq r2, 0, e_signer
  ldxdw r1, [r9+56]
  add64 r1, A_KEY
  lddw r2, system_id
  call key_eq
  jeq r0, 0, e_account
  ldxdw r1, [r9+16]
  add64 r1, A_OWNER
  lddw r2, system_id
  call key_eq
  jeq r0, 0, e_owner
  ldxdw r1, [r9+16]
  ldxdw r2, [r1+A_DLEN]
  jne r2, 0, e_account
  ldxdw r2, [r1+A_LAMPORTS]
  jne r2, 0, claim_adopt
  # CreateAccount { lamports, space, owner }: fee payer and claim sign
  ldxdw r2, [r9+H_IX]
  ldxdw r2, [r2+16]
  mov64 r3, 0
  stxw [r9+H_CPI_DATA], r3
  stxdw [r9+900], r2
  mov64 r3, CLAIM_LEN
  stxdw [r9+908], r3
  mov64 r1, r9
  add64 r1, 916
  ldxdw r2, [r9+H_PROG]
  call copy32
  mov64 r3, 1
  call claim_payer_metas
  mov64 r1, 52
  mov64 r2, 2
  call system_invoke
  jne r0, 0, e_account
  ja claim_record
claim_adopt:
  # Transfer { lamports } from the fee payer
  ldxdw r2, [r9+H_IX]
  ldxdw r2, [r2+16]
  mov64 r3, 2
  stxw [r9+H_CPI_DATA], r3
  stxdw [r9+900], r2
  mov64 r3, 0
  call claim_payer_metas
  mov64 r1, 12
  mov64 r2, 2
  call system_invoke
  jne r0, 0, e_account
  # Allocate { space }, signed by the claim PDA
  mov64 r3, 8
  stxw [r9+H_CPI_DATA], r3
  mov64 r3, CLAIM_LEN
  stxdw [r9+900], r3
  call claim_only_meta
  mov64 r1, 12
  mov64 r2, 1
  call system_invoke
  jne r0, 0, e_account
  # Assign { owner = this program }, signed by the claim PDA
  mov64 r3, 1
  stxw [r9+H_CPI_DATA], r3
  mov64 r1, r9
  add64 r1, 900
  ldxdw r2, [r9+H_PROG]
  call copy32
  call claim_only_meta
  mov64 r1, 36
  mov64 r2, 1
  call system_invoke
  jne r0, 0, e_account
claim_record:
  ldxdw r6, [r9+16]
  lddw r2, 0x316d6c6332303464
  stxdw [r6+CL_DISC], r2
  mov64 r1, r6
  add64 r1, CL_CHANNEL
  ldxdw r2, [r9+0]
  add64 r2, A_KEY
  call copy32
  mov64 r1, r6
  add64 r1, CL_CLAIMANT
  ldxdw r2, [r9+24]
  add64 r2, T_OWNER
  call copy32
  mov64 r1, r6
  add64 r1, CL_RENT_PAYER
  ldxdw r2, [r9+32]
  add64 r2, A_KEY
  call copy32
  mov64 r0, 0
  exit

# claim_payer_metas(r3 = whether the claim signs): metas and infos [fee payer (w, s), claim (w)].
claim_payer_metas:
  lddw r9, HEAP
  mov64 r6, r3
  ldxdw r1, [r9+32]
  mov64 r2, r9
  add64 r2, H_CPI_METAS
  mov64 r3, 1
  mov64 r4, 1
  call fill_meta
  ldxdw r1, [r9+16]
  mov64 r2, r9
  add64 r2, 976
  mov64 r3, 1
  mov64 r4, r6
  call fill_meta
  ldxdw r1, [r9+32]
  mov64 r2, r9
  add64 r2, H_CPI_INFOS
  call fill_info
  ldxdw r1, [r9+16]
  mov64 r2, r9
  add64 r2, 1080
  call fill_info
  exit

# claim_only_meta(): metas and infos [claim (w, s)].
claim_only_meta:
  lddw r9, HEAP
  ldxdw r1, [r9+16]
  mov64 r2, r9
  add64 r2, H_CPI_METAS
  mov64 r3, 1
  mov64 r4, 1
  call fill_meta
  ldxdw r1, [r9+16]
  mov64 r2, r9
  add64 r2, H_CPI_INFOS
  call fill_info
  exit

# system_invoke(r1 = data length, r2 = accounts): invokes the system program with the metas,
# infos and data at H_CPI_*, signed by the claim PDA (the seeds claim_pda left in H_SEEDS).
system_invoke:
  lddw r9, HEAP
  lddw r3, system_id
  stxdw [r9+H_CPI_IX], r3
  mov64 r3, r9
  add64 r3, H_CPI_METAS
  stxdw [r9+864], r3
  stxdw [r9+872], r2
  mov64 r3, r9
  add64 r3, H_CPI_DATA
  stxdw [r9+880], r3
  stxdw [r9+888], r1
  mov64 r3, r9
  add64 r3, H_SEEDS
  stxdw [r9+H_SIGNERS], r3
  mov64 r3, 4
  stxdw [r9+712], r3
  mov64 r3, r2
  mov64 r1, r9
  add64 r1, H_CPI_IX
  mov64 r2, r9
  add64 r2, H_CPI_INFOS
  mov64 r4, r9
  add64 r4, H_SIGNERS
  mov64 r5, 1
  call sol_invoke_signed_c
  exit

# move_lamports(r1 = receiver, r2 = account of this program): all of r2's lamports to r1, and r2's
# discriminator cleared, so the runtime removes it at the end of the transaction.
move_lamports:
  ldxdw r3, [r2+A_LAMPORTS]
  ldxdw r4, [r1+A_LAMPORTS]
  add64 r4, r3
  stxdw [r1+A_LAMPORTS], r4
  mov64 r3, 0
  stxdw [r2+A_LAMPORTS], r3
  stxdw [r2+A_DATA], r3
  mov64 r0, 0
  exit
