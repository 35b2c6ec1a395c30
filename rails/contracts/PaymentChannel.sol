// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

import {IERC3009} from "./IERC3009.sol";
import {Signatures} from "./Signatures.sol";

/// @title PaymentChannel: a buyer-funded channel paid out with cumulative vouchers.
/// @notice The buyer funds a channel with an EIP-3009 ReceiveWithAuthorization whose nonce is
/// `fundingNonce(channelId, depositBefore, amount)`, so the money can only land in that channel.
/// For every task the buyer signs an EIP-712 Voucher for the (worker, creator, gateway) triple
/// that served it, carrying the running totals owed to each. Only the latest voucher per triple
/// matters: one `claim` with the latest voucher of each triple pays any number of tasks. Claims
/// credit payees (pull with `withdraw`); `claimAndPay` also pushes the credit in the same
/// transaction. The buyer can close: `requestClose`, then after `closeGrace` seconds `close`
/// returns what no voucher claims; payees claim until then.
contract PaymentChannel {
    struct Channel {
        address buyer;
        uint64 closeRequestedAt;
        bool closed;
        uint256 deposit;
        uint256 spent;
    }

    struct Paid {
        uint256 worker;
        uint256 creator;
        uint256 gateway;
    }

    struct Voucher {
        address worker;
        address creator;
        address gateway;
        uint256 workerTotal;
        uint256 creatorTotal;
        uint256 gatewayTotal;
        bytes signature;
    }

    bytes32 public constant VOUCHER_TYPEHASH = keccak256(
        "Voucher(bytes32 channelId,address worker,address creator,address gateway,uint256 workerTotal,uint256 creatorTotal,uint256 gatewayTotal)"
    );

    IERC3009 public immutable token;
    uint64 public immutable closeGrace;
    bytes32 public immutable DOMAIN_SEPARATOR;

    mapping(bytes32 => Channel) public channels;
    /// channel id => keccak256(worker, creator, gateway) => totals already credited
    mapping(bytes32 => mapping(bytes32 => Paid)) public paid;
    /// credited and not yet withdrawn
    mapping(address => uint256) public owed;

    event Funded(bytes32 indexed channelId, address indexed buyer, uint256 amount, uint256 deposit);
    event Claimed(
        bytes32 indexed channelId, address indexed worker, address indexed creator, uint256 workerAmount, uint256 creatorAmount, uint256 gatewayAmount
    );
    event Withdrawn(address indexed payee, uint256 amount);
    event CloseRequested(bytes32 indexed channelId, uint64 at);
    event Closed(bytes32 indexed channelId, uint256 returned);

    error NotBuyer();
    error ChannelClosed();
    error ChannelClosing();
    error NoChannel();
    error GraceNotOver();
    error NotSignedByBuyer();
    error Overspent(uint256 spent, uint256 deposit);
    error TransferFailed();

    constructor(IERC3009 token_, uint64 closeGrace_) {
        token = token_;
        closeGrace = closeGrace_;
        DOMAIN_SEPARATOR = Signatures.domainSeparator("d402 PaymentChannel", "1");
    }

    /// @notice The EIP-3009 nonce a buyer signs to add `amount` to a channel that holds
    /// `depositBefore` (0 to open it).
    function fundingNonce(bytes32 channelId, uint256 depositBefore, uint256 amount) public view returns (bytes32) {
        return keccak256(abi.encode(address(this), channelId, depositBefore, amount));
    }

    /// @notice Opens `channelId` for `buyer`, or tops it up. Anyone may submit the buyer's
    /// authorization.
    function fund(
        bytes32 channelId,
        address buyer,
        uint256 amount,
        uint256 validAfter,
        uint256 validBefore,
        bytes calldata signature
    ) external {
        Channel storage c = channels[channelId];
        if (c.buyer == address(0)) {
            c.buyer = buyer;
        } else if (c.buyer != buyer) {
            revert NotBuyer();
        }
        if (c.closed) revert ChannelClosed();
        if (c.closeRequestedAt != 0) revert ChannelClosing();
        bytes32 nonce = fundingNonce(channelId, c.deposit, amount);
        c.deposit += amount;
        token.receiveWithAuthorization(buyer, address(this), amount, validAfter, validBefore, nonce, signature);
        emit Funded(channelId, buyer, amount, c.deposit);
    }

    /// @notice Credits payees with what the vouchers add to the totals already claimed. A voucher
    /// that is not ahead of the claimed totals is skipped, so a batch is never spoiled by a stale
    /// voucher.
    function claim(bytes32 channelId, Voucher[] calldata vouchers) public {
        Channel storage c = channels[channelId];
        if (c.buyer == address(0)) revert NoChannel();
        if (c.closed) revert ChannelClosed();
        uint256 spent = c.spent;
        for (uint256 i = 0; i < vouchers.length; i++) {
            Voucher calldata v = vouchers[i];
            Paid storage p = paid[channelId][keccak256(abi.encode(v.worker, v.creator, v.gateway))];
            if (v.workerTotal < p.worker || v.creatorTotal < p.creator || v.gatewayTotal < p.gateway) continue;
            bytes32 structHash = keccak256(
                abi.encode(
                    VOUCHER_TYPEHASH, channelId, v.worker, v.creator, v.gateway, v.workerTotal, v.creatorTotal, v.gatewayTotal
                )
            );
            if (Signatures.recover(Signatures.digest(DOMAIN_SEPARATOR, structHash), v.signature) != c.buyer) {
                revert NotSignedByBuyer();
            }
            uint256 dw = v.workerTotal - p.worker;
            uint256 dc = v.creatorTotal - p.creator;
            uint256 dg = v.gatewayTotal - p.gateway;
            p.worker = v.workerTotal;
            p.creator = v.creatorTotal;
            p.gateway = v.gatewayTotal;
            owed[v.worker] += dw;
            owed[v.creator] += dc;
            owed[v.gateway] += dg;
            spent += dw + dc + dg;
            emit Claimed(channelId, v.worker, v.creator, dw, dc, dg);
        }
        if (spent > c.deposit) revert Overspent(spent, c.deposit);
        c.spent = spent;
    }

    /// @notice `claim`, then pays every payee of the batch what it is owed.
    function claimAndPay(bytes32 channelId, Voucher[] calldata vouchers) external {
        claim(channelId, vouchers);
        for (uint256 i = 0; i < vouchers.length; i++) {
            _payOut(vouchers[i].worker);
            _payOut(vouchers[i].creator);
            _payOut(vouchers[i].gateway);
        }
    }

    /// @notice Pull withdrawal of everything credited to the caller.
    function withdraw() external {
        _payOut(msg.sender);
    }

    function requestClose(bytes32 channelId) external {
        Channel storage c = channels[channelId];
        if (msg.sender != c.buyer) revert NotBuyer();
        if (c.closed) revert ChannelClosed();
        if (c.closeRequestedAt == 0) {
            c.closeRequestedAt = uint64(block.timestamp);
            emit CloseRequested(channelId, c.closeRequestedAt);
        }
    }

    /// @notice After the grace period, returns the unclaimed deposit to the buyer. Anyone may call.
    function close(bytes32 channelId) external {
        Channel storage c = channels[channelId];
        if (c.buyer == address(0)) revert NoChannel();
        if (c.closed) revert ChannelClosed();
        if (c.closeRequestedAt == 0 || block.timestamp < c.closeRequestedAt + closeGrace) revert GraceNotOver();
        c.closed = true;
        uint256 rest = c.deposit - c.spent;
        if (rest > 0 && !token.transfer(c.buyer, rest)) revert TransferFailed();
        emit Closed(channelId, rest);
    }

    function _payOut(address payee) private {
        uint256 amount = owed[payee];
        if (amount == 0) return;
        owed[payee] = 0;
        if (!token.transfer(payee, amount)) revert TransferFailed();
        emit Withdrawn(payee, amount);
    }
}
