"""Models as users write them, for `twincnn check`: each factory returns a fresh Keras model or PyTorch module.
Pairs that are the same function, and pairs with the mistakes converters are known for."""

import keras
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.notebook_cnn import CNN


def keras_cnn(head=None):
    """The notebook's Keras model; ``head``: its last Dense's activation ("softmax" ends in probabilities)."""
    layers = keras.layers
    return keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(28, 3, activation="relu"), layers.MaxPooling2D(),
                             layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
                             layers.Conv2D(64, 3, activation="relu"), layers.Flatten(),
                             layers.Dense(64, activation="relu"), layers.Dense(10, activation=head)])


torch_cnn = CNN  # the notebook's PyTorch class: the same function once it holds the Keras model's weights


class TorchCNNWithoutSecondReLU(CNN):
    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc2(F.relu(self.fc1(x.view(-1, 64 * 3 * 3))))


def keras_strided():
    """A stride-2 'same' convolution (Keras pads one row and column at the bottom and right), BatchNorm."""
    layers = keras.layers
    return keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(8, 3, strides=2, padding="same"),
                             layers.BatchNormalization(momentum=0.9, epsilon=1e-5), layers.ReLU(),
                             layers.GlobalAveragePooling2D(), layers.Dense(10)])


class TorchStrided(nn.Module):
    """keras_strided's twin, with its padding and BatchNorm settings as arguments."""

    def __init__(self, padding=(0, 1, 0, 1), eps=1e-5, momentum=0.1):
        super().__init__()
        self.pad = nn.ZeroPad2d(padding)
        self.conv = nn.Conv2d(1, 8, 3, stride=2)
        self.bn = nn.BatchNorm2d(8, eps=eps, momentum=momentum)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(self.pad(x))))
        return self.fc(x.mean(dim=(2, 3)))


def torch_strided_symmetric_padding():
    return TorchStrided(padding=(1, 1, 1, 1))  # padding=1: a row above too, so every output shifts


def torch_strided_other_momentum():
    return TorchStrided(momentum=0.01)  # Keras's 0.99, where keras_strided keeps 0.9


not_a_model = 42


# -- models that end in an output head: softmax or log-softmax over the logits -----------------------------------
def keras_cnn_softmax():
    """The notebook's Keras model ending in Dense(10, activation="softmax"), as Keras's MNIST example does."""
    return keras_cnn("softmax")


def keras_mnist_convnet():
    """Keras's MNIST convnet example (keras.io/examples/vision/mnist_convnet), as written there: dropout before
    its softmax Dense."""
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])


class TorchCNNSoftmax(CNN):
    """The notebook's PyTorch class returning probabilities through an nn.Softmax(dim=1) module."""

    def __init__(self):
        super().__init__()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(super().forward(x))


class TorchCNNLogSoftmax(CNN):
    """The notebook's PyTorch class returning F.log_softmax(x, dim=1), for an NLL loss."""

    def forward(self, x):
        return F.log_softmax(super().forward(x), dim=1)


class TorchMnistNet(nn.Module):
    """The MNIST `Net` of pytorch/examples (mnist/main.py), as written there."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output
