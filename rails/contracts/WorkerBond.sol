// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

import {Signatures} from "./Signatures.sol";

interface IBondToken {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// @title WorkerBond: stake a worker posts so that gateways may sell it work nobody can re-execute.
/// @notice A worker bonds tokens (`bond`, after approving this contract). A gateway that sells
/// non-verifiable or scoreable work reads `bonds(worker)` and leases only workers above its
/// minimum. When a buyer wins a dispute, or a validator rejects a scoreable claim, the slasher
/// (the key the deployer names: a gateway operator's or an arbiter's) signs an EIP-712 `Slash`
/// of part of the bond to the buyer; anyone may submit it, once per `reason` (the task). A worker
/// leaves with `requestUnbond`, then `withdraw` after the unbonding delay; tokens waiting out the
/// delay can still be slashed, so a worker cannot run from a dispute it is about to lose.
contract WorkerBond {
    /// 128 bits hold 3.4e38 atomic units, far beyond any token's supply; one slot per worker.
    struct Bond {
        uint128 active;
        uint128 unbonding;
        uint64 unlockAt;
    }

    bytes32 public constant SLASH_TYPEHASH =
        keccak256("Slash(address worker,address to,uint256 amount,bytes32 reason)");

    IBondToken public immutable token;
    address public immutable slasher;
    uint64 public immutable unbondingDelay;
    bytes32 public immutable DOMAIN_SEPARATOR;

    mapping(address => Bond) public bonds;
    /// Reasons (task ids) already slashed for: a signed slash is used at most once.
    mapping(bytes32 => bool) public slashed;

    event Bonded(address indexed worker, uint256 amount, uint256 active);
    event UnbondRequested(address indexed worker, uint256 amount, uint64 unlockAt);
    event Withdrawn(address indexed worker, uint256 amount);
    event Slashed(address indexed worker, address indexed to, uint256 amount, bytes32 indexed reason);

    error ZeroAmount();
    error AmountTooLarge();
    error InsufficientBond(uint256 available);
    error NothingUnbonding();
    error StillLocked(uint64 unlockAt);
    error AlreadySlashed(bytes32 reason);
    error NotSlasher();
    error TransferFailed();

    constructor(IBondToken token_, address slasher_, uint64 unbondingDelay_) {
        token = token_;
        slasher = slasher_;
        unbondingDelay = unbondingDelay_;
        DOMAIN_SEPARATOR = Signatures.domainSeparator("d402 WorkerBond", "1");
    }

    /// @notice Adds `amount` to the caller's active bond (the caller approved this contract).
    function bond(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Bond storage b = bonds[msg.sender];
        uint256 active = uint256(b.active) + amount;
        if (active > type(uint128).max) revert AmountTooLarge();
        b.active = uint128(active);
        if (!token.transferFrom(msg.sender, address(this), amount)) revert TransferFailed();
        emit Bonded(msg.sender, amount, active);
    }

    /// @notice Moves `amount` of the active bond to unbonding; the delay restarts for all of it.
    function requestUnbond(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Bond storage b = bonds[msg.sender];
        if (amount > b.active) revert InsufficientBond(b.active);
        b.active -= uint128(amount);
        b.unbonding += uint128(amount);
        uint64 unlockAt = uint64(block.timestamp) + unbondingDelay;
        b.unlockAt = unlockAt;
        emit UnbondRequested(msg.sender, amount, unlockAt);
    }

    /// @notice Pays the caller what finished unbonding.
    function withdraw() external {
        Bond storage b = bonds[msg.sender];
        uint256 amount = b.unbonding;
        if (amount == 0) revert NothingUnbonding();
        if (block.timestamp < b.unlockAt) revert StillLocked(b.unlockAt);
        b.unbonding = 0;
        if (!token.transfer(msg.sender, amount)) revert TransferFailed();
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice The digest the slasher signs.
    function slashDigest(address worker, address to, uint256 amount, bytes32 reason) public view returns (bytes32) {
        return Signatures.digest(DOMAIN_SEPARATOR, keccak256(abi.encode(SLASH_TYPEHASH, worker, to, amount, reason)));
    }

    /// @notice Pays `amount` of `worker`'s bond to `to`, with the slasher's signature; taken from
    /// the active bond first, then from what is unbonding.
    function slash(address worker, address to, uint256 amount, bytes32 reason, bytes calldata signature) external {
        if (amount == 0) revert ZeroAmount();
        if (slashed[reason]) revert AlreadySlashed(reason);
        if (Signatures.recover(slashDigest(worker, to, amount, reason), signature) != slasher) revert NotSlasher();
        Bond storage b = bonds[worker];
        uint256 available = uint256(b.active) + b.unbonding;
        if (amount > available) revert InsufficientBond(available);
        slashed[reason] = true;
        uint256 fromActive = amount <= b.active ? amount : b.active;
        b.active -= uint128(fromActive);
        b.unbonding -= uint128(amount - fromActive);
        if (!token.transfer(to, amount)) revert TransferFailed();
        emit Slashed(worker, to, amount, reason);
    }
}
