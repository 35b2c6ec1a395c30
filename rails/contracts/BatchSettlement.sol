// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

import {IERC3009} from "./IERC3009.sol";
import {Signatures} from "./Signatures.sol";

/// @title The token-pulling side of a deposit: the settlement contract hands the collector the
/// payer's authorization and expects `amount` of `token` back in the same call.
interface IDepositCollector {
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata data) external;
}

/// @title BatchSettlement: the x402 `batch-settlement` scheme's EVM settlement contract.
/// @notice Written from the x402 specification (`specs/schemes/batch-settlement/
/// scheme_batch_settlement_evm.md`) and the ABI the stock x402 EVM client and facilitator call.
/// A channel is named by the EIP-712 hash of its immutable `ChannelConfig` under the domain
/// ("x402 Batch Settlement", "1", chain id, this address). A payer deposits through the ERC-3009
/// collector (gasless: anyone may submit the payer's signed authorization, whose nonce binds it to
/// one channel); the receiver claims cumulative vouchers the payer signed, many channels in one
/// call, which only moves accounting; `settle` sweeps what a receiver claimed to it in one transfer.
/// The payer's escape hatch is a timed withdrawal (`withdrawDelay`, during which the receiver can
/// still claim); the receiver side can refund unclaimed escrow at once.
///
/// The contract keeps no constructor state: on local chains its runtime code is placed at the
/// canonical address with `anvil_setCode`, so everything it needs is a constant or computed.
contract BatchSettlement {
    struct ChannelConfig {
        address payer;
        address payerAuthorizer;
        address receiver;
        address receiverAuthorizer;
        address token;
        uint40 withdrawDelay;
        bytes32 salt;
    }

    struct Voucher {
        ChannelConfig channel;
        uint128 maxClaimableAmount;
    }

    struct VoucherClaim {
        Voucher voucher;
        bytes signature;
        uint128 totalClaimed;
    }

    struct ChannelState {
        uint128 balance;
        uint128 totalClaimed;
    }

    struct PendingWithdrawal {
        uint128 amount;
        uint40 initiatedAt;
    }

    struct ReceiverState {
        uint128 totalClaimed;
        uint128 totalSettled;
    }

    /// The canonical ERC-3009 deposit collector; the stock client names it as the recipient of
    /// the payer's `receiveWithAuthorization`.
    address public constant ERC3009_DEPOSIT_COLLECTOR = 0x4020806089470a89826cB9fB1f4059150b550004;
    uint40 public constant MIN_WITHDRAW_DELAY = 900;
    uint40 public constant MAX_WITHDRAW_DELAY = 2_592_000;

    bytes32 public constant CHANNEL_CONFIG_TYPEHASH = keccak256(
        "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)"
    );
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 maxClaimableAmount)");
    bytes32 public constant REFUND_TYPEHASH = keccak256("Refund(bytes32 channelId,uint256 nonce,uint128 amount)");
    bytes32 public constant CLAIM_ENTRY_TYPEHASH =
        keccak256("ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)");
    bytes32 public constant CLAIM_BATCH_TYPEHASH = keccak256(
        "ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
    );
    /// EIP-1271's magic value.
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;

    mapping(bytes32 => ChannelState) public channels;
    mapping(bytes32 => PendingWithdrawal) public pendingWithdrawals;
    mapping(bytes32 => uint256) public refundNonce;
    mapping(address => mapping(address => ReceiverState)) public receivers;

    event ChannelCreated(bytes32 indexed channelId, ChannelConfig config);
    event ChannelClosed(bytes32 indexed channelId, ChannelConfig config);
    event Deposited(bytes32 indexed channelId, address indexed sender, uint128 amount, uint128 balance);
    event Claimed(bytes32 indexed channelId, address indexed sender, uint128 amount, uint128 totalClaimed);
    event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
    event WithdrawInitiated(bytes32 indexed channelId, uint128 amount, uint40 initiatedAt);
    event WithdrawFinalized(bytes32 indexed channelId, uint128 amount);
    event Refunded(bytes32 indexed channelId, address indexed sender, uint128 amount, uint256 nonce);

    error Reentrancy();
    error UnknownCollector();
    error ZeroAmount();
    error WithdrawDelayOutOfRange();
    error ReceiverAuthorizerRequired();
    error DepositNotReceived();
    error NotReceiverSide();
    error NotPayerSide();
    error InvalidVoucherSignature();
    error InvalidAuthorizerSignature();
    error ClaimAboveVoucher();
    error ClaimAboveBalance();
    error ClaimBelowClaimed();
    error MixedReceiverAuthorizers();
    error WithdrawAboveUnclaimed();
    error WithdrawPending();
    error NoWithdrawal();
    error WithdrawDelayNotElapsed();
    error RefundNonceMismatch();
    error TransferFailed();

    /// A reentrancy lock in transient storage (EIP-1153): the token and the collector are called
    /// out to, and neither may re-enter a value-moving function.
    modifier nonReentrant() {
        assembly {
            if tload(0) {
                mstore(0, 0xab143c06) // Reentrancy()
                revert(0x1c, 0x04)
            }
            tstore(0, 1)
        }
        _;
        assembly {
            tstore(0, 0)
        }
    }

    // ---- identity and digests ------------------------------------------------------------------

    function domainSeparator() public view returns (bytes32) {
        return Signatures.domainSeparator("x402 Batch Settlement", "1");
    }

    function getChannelId(ChannelConfig calldata config) public view returns (bytes32) {
        return Signatures.digest(domainSeparator(), _configHash(config));
    }

    function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) public view returns (bytes32) {
        return Signatures.digest(domainSeparator(), keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, maxClaimableAmount)));
    }

    function getRefundDigest(bytes32 channelId, uint256 nonce, uint128 amount) public view returns (bytes32) {
        return Signatures.digest(domainSeparator(), keccak256(abi.encode(REFUND_TYPEHASH, channelId, nonce, amount)));
    }

    /// The EIP-712 `ClaimBatch` digest the receiver authorizer signs for `claimWithSignature`.
    function getClaimBatchDigest(VoucherClaim[] calldata voucherClaims) public view returns (bytes32) {
        bytes32 domain = domainSeparator();
        bytes32[] memory entries = new bytes32[](voucherClaims.length);
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            VoucherClaim calldata c = voucherClaims[i];
            bytes32 id = Signatures.digest(domain, _configHash(c.voucher.channel));
            entries[i] = keccak256(abi.encode(CLAIM_ENTRY_TYPEHASH, id, c.voucher.maxClaimableAmount, c.totalClaimed));
        }
        return Signatures.digest(domain, keccak256(abi.encode(CLAIM_BATCH_TYPEHASH, keccak256(abi.encodePacked(entries)))));
    }

    // ---- deposits ------------------------------------------------------------------------------

    /// @notice Funds a channel through a collector that pulls `amount` of the channel's token from
    /// the payer with the authorization in `collectorData`. Anyone may submit: the authorization
    /// is the payer's consent, and the collector binds it to this channel id.
    function deposit(ChannelConfig calldata config, uint128 amount, address collector, bytes calldata collectorData)
        external
        nonReentrant
    {
        if (collector != ERC3009_DEPOSIT_COLLECTOR) revert UnknownCollector();
        if (amount == 0) revert ZeroAmount();
        if (config.withdrawDelay < MIN_WITHDRAW_DELAY || config.withdrawDelay > MAX_WITHDRAW_DELAY) {
            revert WithdrawDelayOutOfRange();
        }
        if (config.receiverAuthorizer == address(0)) revert ReceiverAuthorizerRequired();
        bytes32 id = getChannelId(config);
        IERC3009 token = IERC3009(config.token);
        uint256 before = token.balanceOf(address(this));
        IDepositCollector(collector).collect(config.payer, config.token, amount, id, collectorData);
        if (token.balanceOf(address(this)) != before + amount) revert DepositNotReceived();

        ChannelState storage ch = channels[id];
        if (ch.balance == 0 && ch.totalClaimed == 0) emit ChannelCreated(id, config);
        ch.balance += amount;
        emit Deposited(id, msg.sender, amount, ch.balance);
    }

    // ---- claims and settlement -----------------------------------------------------------------

    /// @notice Claims the payer-signed vouchers of many channels; the caller must be every row's
    /// receiver or receiver authorizer. Only accounting moves: `settle` transfers.
    function claim(VoucherClaim[] calldata voucherClaims) external nonReentrant {
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            ChannelConfig calldata cfg = voucherClaims[i].voucher.channel;
            if (msg.sender != cfg.receiver && msg.sender != cfg.receiverAuthorizer) revert NotReceiverSide();
            _claim(voucherClaims[i]);
        }
    }

    /// @notice The relayable claim: anyone submits, the receiver authorizer shared by every row
    /// has signed the `ClaimBatch`.
    function claimWithSignature(VoucherClaim[] calldata voucherClaims, bytes calldata authorizerSignature)
        external
        nonReentrant
    {
        if (voucherClaims.length == 0) return;
        address authorizer = voucherClaims[0].voucher.channel.receiverAuthorizer;
        for (uint256 i = 1; i < voucherClaims.length; i++) {
            if (voucherClaims[i].voucher.channel.receiverAuthorizer != authorizer) revert MixedReceiverAuthorizers();
        }
        if (!_validSignature(authorizer, getClaimBatchDigest(voucherClaims), authorizerSignature)) {
            revert InvalidAuthorizerSignature();
        }
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            _claim(voucherClaims[i]);
        }
    }

    /// @notice Transfers everything claimed for `receiver` in `token` and not yet settled.
    /// Permissionless: the money can only go to the receiver.
    function settle(address receiver, address token) external nonReentrant {
        ReceiverState storage r = receivers[receiver][token];
        uint128 amount = r.totalClaimed - r.totalSettled;
        if (amount == 0) return;
        r.totalSettled = r.totalClaimed;
        _pay(token, receiver, amount);
        emit Settled(receiver, token, msg.sender, amount);
    }

    // ---- the payer's timed withdrawal ----------------------------------------------------------

    function initiateWithdraw(ChannelConfig calldata config, uint128 amount) external {
        _onlyPayerSide(config);
        if (amount == 0) revert ZeroAmount();
        bytes32 id = getChannelId(config);
        ChannelState storage ch = channels[id];
        if (amount > ch.balance - ch.totalClaimed) revert WithdrawAboveUnclaimed();
        PendingWithdrawal storage w = pendingWithdrawals[id];
        if (w.initiatedAt != 0) revert WithdrawPending();
        w.amount = amount;
        w.initiatedAt = uint40(block.timestamp);
        emit WithdrawInitiated(id, amount, uint40(block.timestamp));
    }

    /// @notice After the delay, returns the pending amount, capped by what is still unclaimed
    /// (the receiver may have claimed during the delay).
    function finalizeWithdraw(ChannelConfig calldata config) external nonReentrant {
        _onlyPayerSide(config);
        bytes32 id = getChannelId(config);
        PendingWithdrawal memory w = pendingWithdrawals[id];
        if (w.initiatedAt == 0) revert NoWithdrawal();
        if (block.timestamp < uint256(w.initiatedAt) + config.withdrawDelay) revert WithdrawDelayNotElapsed();
        delete pendingWithdrawals[id];
        ChannelState storage ch = channels[id];
        uint128 available = ch.balance - ch.totalClaimed;
        uint128 amount = w.amount < available ? w.amount : available;
        ch.balance -= amount;
        if (amount > 0) _pay(config.token, config.payer, amount);
        emit WithdrawFinalized(id, amount);
        if (ch.balance == ch.totalClaimed && ch.totalClaimed == 0) emit ChannelClosed(id, config);
    }

    // ---- cooperative refund --------------------------------------------------------------------

    function refund(ChannelConfig calldata config, uint128 amount) external nonReentrant {
        if (msg.sender != config.receiver && msg.sender != config.receiverAuthorizer) revert NotReceiverSide();
        bytes32 id = getChannelId(config);
        _refund(config, id, amount, refundNonce[id]);
    }

    function refundWithSignature(
        ChannelConfig calldata config,
        uint128 amount,
        uint256 nonce,
        bytes calldata receiverAuthorizerSignature
    ) external nonReentrant {
        bytes32 id = getChannelId(config);
        if (nonce != refundNonce[id]) revert RefundNonceMismatch();
        if (!_validSignature(config.receiverAuthorizer, getRefundDigest(id, nonce, amount), receiverAuthorizerSignature))
        {
            revert InvalidAuthorizerSignature();
        }
        _refund(config, id, amount, nonce);
    }

    // ---- batching ------------------------------------------------------------------------------

    /// @notice Runs several of this contract's calls in one transaction (claim then refund, as the
    /// stock facilitator does). Each runs as if called directly, with the same sender.
    function multicall(bytes[] calldata data) external returns (bytes[] memory results) {
        results = new bytes[](data.length);
        for (uint256 i = 0; i < data.length; i++) {
            (bool ok, bytes memory out) = address(this).delegatecall(data[i]);
            if (!ok) {
                assembly {
                    revert(add(out, 32), mload(out))
                }
            }
            results[i] = out;
        }
    }

    // ---- internals -----------------------------------------------------------------------------

    function _configHash(ChannelConfig calldata c) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                CHANNEL_CONFIG_TYPEHASH,
                c.payer,
                c.payerAuthorizer,
                c.receiver,
                c.receiverAuthorizer,
                c.token,
                c.withdrawDelay,
                c.salt
            )
        );
    }

    /// One row of a claim. Equal to what is already claimed is a no-op (a retried claim moves
    /// nothing); below it, above the voucher or above the balance reverts.
    function _claim(VoucherClaim calldata c) private {
        ChannelConfig calldata cfg = c.voucher.channel;
        bytes32 id = getChannelId(cfg);
        ChannelState storage ch = channels[id];
        if (c.totalClaimed > c.voucher.maxClaimableAmount) revert ClaimAboveVoucher();
        if (c.totalClaimed < ch.totalClaimed) revert ClaimBelowClaimed();
        if (c.totalClaimed > ch.balance) revert ClaimAboveBalance();
        bytes32 digest = getVoucherDigest(id, c.voucher.maxClaimableAmount);
        if (cfg.payerAuthorizer != address(0)) {
            if (_recover(digest, c.signature) != cfg.payerAuthorizer) revert InvalidVoucherSignature();
        } else if (!_validSignature(cfg.payer, digest, c.signature)) {
            revert InvalidVoucherSignature();
        }
        uint128 delta = c.totalClaimed - ch.totalClaimed;
        if (delta == 0) return;
        ch.totalClaimed = c.totalClaimed;
        receivers[cfg.receiver][cfg.token].totalClaimed += delta;
        emit Claimed(id, msg.sender, delta, c.totalClaimed);
    }

    function _refund(ChannelConfig calldata config, bytes32 id, uint128 amount, uint256 nonce) private {
        // The nonce advances first, whatever moves: a direct refund voids a pre-signed one.
        refundNonce[id] = nonce + 1;
        ChannelState storage ch = channels[id];
        uint128 available = ch.balance - ch.totalClaimed;
        uint128 paid = amount < available ? amount : available;
        if (paid == 0) return;
        ch.balance -= paid;
        PendingWithdrawal storage w = pendingWithdrawals[id];
        if (w.initiatedAt != 0) {
            if (paid >= w.amount) delete pendingWithdrawals[id];
            else w.amount -= paid;
        }
        _pay(config.token, config.payer, paid);
        emit Refunded(id, msg.sender, paid, nonce);
        if (ch.balance == ch.totalClaimed && ch.totalClaimed == 0) emit ChannelClosed(id, config);
    }

    function _onlyPayerSide(ChannelConfig calldata config) private view {
        if (msg.sender != config.payer && (config.payerAuthorizer == address(0) || msg.sender != config.payerAuthorizer))
        {
            revert NotPayerSide();
        }
    }

    function _pay(address token, address to, uint128 amount) private {
        (bool ok, bytes memory ret) = token.call(abi.encodeCall(IERC3009.transfer, (to, amount)));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }

    /// ECDSA for an account without code, EIP-1271 for a contract account.
    function _validSignature(address signer, bytes32 digest, bytes calldata signature) private view returns (bool) {
        if (signer.code.length == 0) {
            return Signatures.tryRecover(digest, signature) == signer;
        }
        (bool ok, bytes memory ret) =
            signer.staticcall(abi.encodeWithSelector(ERC1271_MAGIC, digest, signature));
        return ok && ret.length >= 32 && bytes4(abi.decode(ret, (bytes32))) == ERC1271_MAGIC;
    }

    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        return Signatures.recover(digest, signature);
    }
}
